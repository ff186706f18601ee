"""The enricher stage: adds the received time and the record type's category."""
