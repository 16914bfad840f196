"""The versioned REST API (/api/v1/) for hospital systems: thin views over diagnosis.selectors and services."""
