"""The study's design: the spec, the names of its roles and groups, the protocol's conditions, the splits."""
