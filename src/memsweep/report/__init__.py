"""`memsweep report NAME`: one module per topic of report.md, each holding that topic's computation, figure and
section; the shared pieces (reading the sweep, the figure style, the number formatter, drawing) beside them.

  build.py             make_report and load_sweep: reads the sweep, runs each topic, draws the figures, writes report.md
  summary.py           RunData, summary_table (summary.csv, one row per run) and its section in report.md
  document.py          report.md in order: title (and the sentence when no run memorized), unfinished runs,
                       definitions, where the time went, the figures, the problems
  claims.py            the paper's claims with verdicts (claims.csv) and their section
  findings.py          the fits across runs (fits.csv) in words ("What the data say") and as a table
  scaling.py           the fits' figures: onsets, the generalization window, rate and fidelity against an axis
  collapse.py          collapse in normalized time: figure and section
  curves.py            the training curves figures by axis
  gap_by_noise.py      where in the noise level the train/test gap opens: the heatmaps
  sample_grids.py      the saved sample grids beside their nearest training images
  sample_analyses.py   the analyses of saved samples (novelty, copies), stored in each run's analysis cache
  novelty_fidelity.py  novelty beside fidelity: section and figures
  copies.py            which training images are copied: computed, section and figure
  disjoint.py          the disjoint-subsets test: computed, section and figure
  beyond_paper.py      the "Beyond the paper" part: runs its analyses, queues its figures, its short sections
                       (field_dist, double descent, effective model memorization)
  probe_report.py      the probes (hybrid sampling, the ELS machine, trajectories): tables, figures and section
  architectures.py     architectures compared on the same data: table, figure and section
  style.py             the figures' shared look: labels, log ticks, run selection, colours, legends, saving
  markdown.py          fmt (the one number formatter), intervals in words, Markdown tables
  figure_cache.py      a figure kept from the last report when its inputs are unchanged
  drawing.py           figures drawn side by side in forked workers
  wandb_report.py      the report logged to Weights & Biases
"""
