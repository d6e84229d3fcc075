/* The Compare runs page's scatter of one param against one metric.
 *
 * A <canvas data-scatter="ID"> reads {points: [{x, y, label}], numeric, categories, x, y}
 * from the json_script element ID; x and y are the axis titles. A numeric param gets a
 * number axis, any other an axis of its categories. Bar charts are static/js/charts.js.
 * Shared parts: window.mlopsCharts (static/js/chart_data.js, loaded before this file).
 */
(function () {
  "use strict";

  function draw(canvas) {
    var spec = mlopsCharts.spec(canvas, "scatter");
    if (!spec) return;
    // Grace keeps the extreme points off the plot's edges, where they would be cut in half.
    var xAxis = { title: { display: true, text: spec.x } };
    if (spec.numeric) {
      xAxis.type = "linear";
      xAxis.grace = "10%";
    } else {
      xAxis.type = "category";
      xAxis.labels = spec.categories;
      xAxis.offset = true; // room either side, so the first and last points are not on the edge
    }
    new Chart(canvas, {
      type: "scatter",
      data: {
        datasets: [{
          label: spec.y,
          data: spec.points,
          // See-through, so that runs sharing a point show as a darker one.
          backgroundColor: "rgba(79, 70, 229, 0.55)",
          borderColor: "#3730a3",
          pointRadius: 6,
          pointHoverRadius: 7,
        }],
      },
      options: mlopsCharts.options({
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: function (item) {
                return item.raw.label + ": " + spec.x + " = " + item.raw.x + ", " + spec.y + " = " + item.raw.y;
              },
            },
          },
        },
        scales: { x: xAxis, y: { grace: "10%", title: { display: true, text: spec.y } } },
      }),
    });
  }

  mlopsCharts.drawEvery("canvas[data-scatter]", draw);
})();
