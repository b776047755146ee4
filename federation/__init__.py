"""Federation: edge and central nodes exchanging basin-sync packets."""
