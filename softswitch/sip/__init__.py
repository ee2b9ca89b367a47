"""sip layer."""
