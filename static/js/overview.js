/* The operations overview's charts, drawn from data the server has already aggregated.
 *
 * A <canvas data-stacked-chart="ID"> reads {labels, series: [{status, label, values}]}
 * from the json_script element ID and draws one stacked bar per label, a colour per run
 * status with the status named in the legend (colour is never the only signal).
 * Sections are swapped by HTMX every 30 s: charts of a swapped-out section are destroyed
 * first and those of the new one drawn after it settles. No inline script.
 * Shared parts: window.mlopsCharts (static/js/chart_data.js, loaded before this file).
 */
(function () {
  "use strict";

  var COLOURS = {
    succeeded: "#16a34a",
    failed: "#dc2626",
    cancelled: "#d97706",
    running: "#2563eb",
    queued: "#93c5fd",
  };

  function draw(canvas) {
    var spec = mlopsCharts.spec(canvas, "stackedChart");
    if (!spec) return;
    var datasets = spec.series
      .filter(function (series) { return series.total > 0; })
      .map(function (series) {
        return {
          label: series.label,
          data: series.values,
          backgroundColor: COLOURS[series.status] || "#6b7280",
          borderWidth: 0,
          barPercentage: 0.9,
          categoryPercentage: 0.9,
        };
      });
    new Chart(canvas, {
      type: "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: mlopsCharts.options({
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "top", labels: { boxWidth: 12, boxHeight: 12 } } },
        scales: {
          x: {
            stacked: true,
            title: { display: true, text: "Day" },
            ticks: { autoSkip: true, maxRotation: 0, autoSkipPadding: 8 },
            grid: { display: false },
          },
          y: {
            stacked: true,
            beginAtZero: true,
            title: { display: true, text: "Runs" },
            ticks: { precision: 0 },
          },
        },
      }),
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-stacked-chart]").forEach(draw);
  }

  function destroyAll(root) {
    if (typeof Chart === "undefined" || !root) return;
    root.querySelectorAll("canvas[data-stacked-chart]").forEach(function (canvas) {
      var chart = Chart.getChart(canvas);
      if (chart) chart.destroy();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:beforeSwap", function (event) { destroyAll(event.detail.target); });
  // After an outerHTML swap the settled element may be the new section or its parent:
  // drawing skips canvases that already have a chart, so the whole page is safe to scan.
  document.addEventListener("htmx:afterSettle", function () { drawAll(document); });
})();
