"""The strict configuration model (pydantic) and its YAML loader."""
