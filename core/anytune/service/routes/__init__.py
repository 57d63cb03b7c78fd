"""The service's routes, one module per resource; `anytune.service.app` puts them together."""
