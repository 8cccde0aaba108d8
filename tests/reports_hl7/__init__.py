"""Tests of the HL7 ORU^R01 builder and validator."""
