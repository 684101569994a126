"""dignity: a self-hosted trust-and-safety engine against non-consensual intimate imagery.

The package hashes media (PDQ, MD5, SHA-256), keeps banks of known hashes, matches uploads
against them exactly and fast, reads what files say about their origin (C2PA, XMP, generator
metadata, watermarks), scores nudity, and decides under a policy with reasons; all of it
through a CLI and an HTTP API. See DESIGN.md in the shared folder for the vocabulary.
"""

import os

# onnxruntime (the nudity classifier) starts Microsoft telemetry on import unless told not to;
# set before anything can import it, since dignity does no network I/O it was not asked for.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
