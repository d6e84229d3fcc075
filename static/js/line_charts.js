/* Line charts of series the server has already sampled to a bounded size.
 *
 * A <canvas data-line-chart="ID"> reads {points: [{x, y}], x, y} from the json_script
 * element ID (x and y are the axis titles). A null y is a value JSON cannot carry
 * (NaN, infinity): the line has a gap there. No inline script: the page carries data.
 */
(function () {
  "use strict";

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.lineChart);
    if (!source || typeof Chart === "undefined" || Chart.getChart(canvas)) return;
    var spec;
    try {
      spec = JSON.parse(source.textContent);
    } catch (error) {
      return;
    }
    new Chart(canvas, {
      type: "line",
      data: {
        datasets: [{
          label: spec.y,
          data: spec.points,
          borderColor: "#4f46e5",
          backgroundColor: "#4f46e5",
          borderWidth: 2,
          // Markers help a short series and clutter a long one.
          pointRadius: spec.points.length > 50 ? 0 : 3,
          spanGaps: false,
        }],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        // Room for the markers of the first and last points, which sit on the edges.
        layout: { padding: { top: 6, right: 8 } },
        parsing: { xAxisKey: "x", yAxisKey: "y" },
        interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: { legend: { display: false } },
        scales: {
          x: { type: "linear", title: { display: true, text: spec.x }, ticks: { precision: 0 } },
          y: { title: { display: true, text: spec.y } },
        },
      },
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-line-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
