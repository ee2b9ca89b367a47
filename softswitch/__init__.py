"""softswitch: a SIP softswitch with skills-based ACD for virtual contact centers."""

__version__ = "0.1.0"
