"""The run report: what every WDL task attempt did, when, and what it cost.

- ``cost``: what the attempts cost (``Prices``, ``estimate_cost``);
- ``render``: the timeline picture and the report page (``timeline_svg``, ``report_html``);
- ``run``: what the driver writes at a run's end (``run_report``: report.html, timeline.svg,
  cost.json under the results prefix), with the driver's own task as a row.
"""
