"""The study's report (:mod:`taskvec.report.main`: metrics.json, tables, figures and a self-contained
index.html), and what every report shares (the page shell, number formatting, figure saving, tables):
the extended studies' report (:mod:`taskvec.studies.report`) and each study's section build on it.
Importing this package runs nothing, and nothing here names an extended study."""
