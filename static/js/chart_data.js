/* What the chart scripts (charts.js, compare.js, line_charts.js, dashboards.js,
 * overview.js) share, as window.mlopsCharts. Load it after Chart.js and before them.
 *
 * spec(canvas, key): the data of `canvas`, parsed from the json_script element whose id
 *   its data attribute `key` (a dataset name: "lineChart" for data-line-chart) holds; null
 *   when there is nothing to draw: no such element, no Chart.js, a chart already on the
 *   canvas, or data that does not parse.
 * options(extra): Chart.js options every chart here starts from (sized by its container,
 *   drawn at once), with `extra` added.
 * drawEvery(selector, draw): draw(canvas) for every canvas matching `selector` when the
 *   page loads and in what HTMX swaps in.
 */
(function () {
  "use strict";

  function spec(canvas, key) {
    var source = document.getElementById(canvas.dataset[key]);
    if (!source || typeof Chart === "undefined" || Chart.getChart(canvas)) return null;
    try {
      return JSON.parse(source.textContent);
    } catch (error) {
      return null;
    }
  }

  function options(extra) {
    var base = { responsive: true, maintainAspectRatio: false, animation: false };
    return Object.assign(base, extra);
  }

  function drawEvery(selector, draw) {
    function drawAll(root) {
      (root || document).querySelectorAll(selector).forEach(draw);
    }
    document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
    document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
  }

  window.mlopsCharts = { spec: spec, options: options, drawEvery: drawEvery };
})();
