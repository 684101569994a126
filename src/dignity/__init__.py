"""dignity: a self-hosted trust-and-safety engine against non-consensual intimate imagery.

The package hashes media (PDQ, MD5, SHA-256), keeps banks of known hashes, matches uploads
against them exactly and fast, and exposes all of it through a CLI (and, later, HTTP).
See DESIGN.md in the shared folder for the architecture and vocabulary.
"""

__version__ = "0.1.0"
