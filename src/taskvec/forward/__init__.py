"""Batched forward passes, one module per concern: :mod:`~taskvec.forward.batching` (left padding
with explicit position ids, batches, host copies, out-of-memory back-off, the cheapest split into
runs), :mod:`~taskvec.forward.capture` (last-token states, the shared-prefix extraction),
:mod:`~taskvec.forward.readout` (next-token prediction), :mod:`~taskvec.forward.generate` (greedy
generation) and :mod:`~taskvec.forward.patched` (patched predictions and the layer sweep).

Left padding puts every prompt's last token in the last column, which is the only position taskvec
reads or patches. Position ids count real tokens only, so a padded prompt computes exactly what it
computes alone (tests check batched against unbatched).

Extraction imports no patching code and patching no extraction code, so that a change to one reruns
only the study's steps that run it (each step's code inputs are what its command imports).
"""
