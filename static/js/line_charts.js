/* Line charts of series the server has already sampled to a bounded size.
 *
 * A <canvas data-line-chart="ID"> reads {points: [{x, y}], x, y} from the json_script
 * element ID (x and y are the axis titles). A null y is a value JSON cannot carry
 * (NaN, infinity): the line has a gap there. No inline script: the page carries data.
 * Shared parts: window.mlopsCharts (static/js/chart_data.js, loaded before this file).
 */
(function () {
  "use strict";

  function draw(canvas) {
    var spec = mlopsCharts.spec(canvas, "lineChart");
    if (!spec) return;
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
      options: mlopsCharts.options({
        // Room for the markers of the first and last points, which sit on the edges.
        layout: { padding: { top: 6, right: 8 } },
        parsing: { xAxisKey: "x", yAxisKey: "y" },
        interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: { legend: { display: false } },
        scales: {
          x: { type: "linear", title: { display: true, text: spec.x }, ticks: { precision: 0 } },
          y: { title: { display: true, text: spec.y } },
        },
      }),
    });
  }

  mlopsCharts.drawEvery("canvas[data-line-chart]", draw);
})();
