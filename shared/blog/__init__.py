"""Domain package of the Users & Posts API, shipped as the functions' shared Lambda layer."""
