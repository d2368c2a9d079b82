"""Theory objects: protocols, equations of state, potentials, processes, systems."""
