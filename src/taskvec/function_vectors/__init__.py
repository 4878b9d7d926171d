"""Function vectors (Todd et al., ICLR 2024) beside task vectors, one module per concern: the
attention heads at the last token and their causal effects (:mod:`.heads`), the function vector and
its controls (:mod:`.vectors`), the extended study's step over the default study's files
(:mod:`.analysis`), and its report section (:mod:`.report`)."""
