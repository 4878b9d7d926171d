"""Every method that turns demonstrations into a vector (:mod:`taskvec.methods`), compared on the
study's own prompts under one protocol: the comparison step (:mod:`.run`) and its report section
(:mod:`.report`)."""
