"""The study's two jobs per (model, task), each one process for all the task's split seeds, each in
its own module so that each job's code inputs are only its own (:mod:`taskvec.codedeps`):

- extraction (:func:`taskvec.jobs.extraction.extract_task_file`): everything that runs the
  demonstrations. It samples the prompts for the model's tokenizer, computes theta at every layer
  for the dev and test prompts, and runs the ICL prompt as one more suffix on the demonstrations
  that theta comes from (its prediction and its greedy generation for the strict metric). Writes the
  prompts, activations and ICL files.
- evaluation (:func:`taskvec.jobs.evaluation.evaluate_files`): the bare queries only, reading the
  extraction's files: the baseline, the layer sweep on dev, the task vector on test at the layer
  chosen on dev, and the strict generations. Writes the results files.

So a change to the scoring or patching code reruns evaluation and no extraction. By hand,
`taskvec make-prompts`, `taskvec extract` and `taskvec evaluate` run the same functions on one file
of each.
"""
