"""Integration tests: a real `softswitch serve` driven by real SIP peers (see harness/)."""
