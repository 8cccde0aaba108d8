"""The fault and attack suite: hostile inputs, the inbox boundary, audit tampering, MLLP faults."""
