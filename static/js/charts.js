/* Bar charts drawn from data the server has already aggregated.
 *
 * A <canvas data-chart="ID"> reads {labels, values, x, y} from the json_script element
 * ID (x and y are the axis titles); data-chart-horizontal="1" lays the bars sideways,
 * for long labels such as feature names. No inline script: the page only carries data.
 * Shared parts: window.mlopsCharts (static/js/chart_data.js, loaded before this file).
 */
(function () {
  "use strict";

  var BAR_HEIGHT = 26; // pixels per bar of a horizontal chart

  function draw(canvas) {
    var spec = mlopsCharts.spec(canvas, "chart");
    if (!spec) return;
    var horizontal = canvas.dataset.chartHorizontal === "1";
    if (horizontal && canvas.parentElement) {
      canvas.parentElement.style.height = Math.max(160, 60 + BAR_HEIGHT * spec.labels.length) + "px";
    }
    var valueAxis = { title: { display: true, text: spec.y }, beginAtZero: true };
    var labelAxis = { title: { display: true, text: spec.x }, ticks: { autoSkip: !horizontal } };
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: [{ label: spec.y, data: spec.values, backgroundColor: "#4f46e5", borderRadius: 2 }],
      },
      options: mlopsCharts.options({
        indexAxis: horizontal ? "y" : "x",
        plugins: { legend: { display: false } },
        scales: horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis },
      }),
    });
  }

  mlopsCharts.drawEvery("canvas[data-chart]", draw);
})();
