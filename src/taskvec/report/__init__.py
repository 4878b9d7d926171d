"""The reports: the study's (:mod:`taskvec.report.main`: metrics.json, tables, figures and a
self-contained index.html) and the extended studies' (:mod:`taskvec.report.extended`), and what they
share (the page shell, number formatting, figure saving). Importing this package runs nothing, so
that a study's own report code (:mod:`taskvec.function_vectors.report`, for one) can use the shared
parts without importing every report."""
