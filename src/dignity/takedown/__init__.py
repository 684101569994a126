"""The takedown workflow: requests and their 48-hour clock, the review queue, removals with
copy sweeps, statements of reasons and appeals, and the transparency report.

Modules: ``models`` (tables), ``clock`` (injectable time source), ``validity`` (what a request
lacks for the TAKE IT DOWN Act and DSA Art. 16; pure), ``requests`` (intake, status, escalation,
rejection, abuse flags), ``scanlog`` (hashes of what was scanned, for sweeps), ``removal``
(removal calls through the outbox, block bank, sweeps, restores), ``notices`` (statements,
appeals, the requester's outcome, DSA Transparency Database export), ``review`` (the reviewer
queue and its decisions), ``sessions`` (review UI sign-in), ``report`` (transparency figures).
The composition root (:mod:`dignity.services`) builds these services and runs the clock
(escalation) and the scan log's purge as background tasks.
"""
