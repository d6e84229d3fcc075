/* User dashboards: charts drawn from data the server has aggregated, drag-and-drop order,
 * PNG download and print.
 *
 * A <canvas data-dashboard-chart="ID"> reads {kind, labels, series: [{name, values}],
 * stacked, x_title, y_title} from the json_script element ID. The chart grid of an editor
 * is a form (templates/dashboards/htmx/chart_grid.html): SortableJS moves the cards and
 * fires "end", on which htmx posts the cards' `order` inputs in their new order. The page
 * works without this file, except for the drawings, the PNG links and the Print button.
 * Shared parts: window.mlopsCharts (static/js/chart_data.js, loaded before this file).
 */
(function () {
  "use strict";

  var COLOURS = ["#4f46e5", "#0891b2", "#d97706", "#16a34a", "#db2777", "#7c3aed",
    "#dc2626", "#0d9488", "#65a30d", "#9333ea"];
  var CANVAS_TYPES = { line: "line", area: "line", bar: "bar", scatter: "scatter", pie: "pie" };

  // A PNG of a transparent canvas shows black in some viewers: paint it white first.
  var whiteBackground = {
    id: "whiteBackground",
    beforeDraw: function (chart) {
      var context = chart.canvas.getContext("2d");
      context.save();
      context.globalCompositeOperation = "destination-over";
      context.fillStyle = "#fff";
      context.fillRect(0, 0, chart.width, chart.height);
      context.restore();
    },
  };

  function colour(index, alpha) {
    var hex = COLOURS[index % COLOURS.length];
    if (alpha === undefined) return hex;
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function datasets(spec) {
    return spec.series.map(function (series, index) {
      var set = { label: series.name, data: series.values, borderColor: colour(index),
        backgroundColor: colour(index), borderWidth: 2 };
      if (spec.kind === "line" || spec.kind === "area") {
        set.pointRadius = series.values.length > 50 ? 0 : 3;
        set.fill = spec.kind === "area" ? (spec.stacked && index > 0 ? "-1" : "origin") : false;
        if (spec.kind === "area") set.backgroundColor = colour(index, 0.25);
      } else if (spec.kind === "scatter") {
        set.data = series.values.map(function (y, i) { return { x: spec.labels[i], y: y }; });
        set.pointRadius = 3;
      } else if (spec.kind === "pie") {
        set.backgroundColor = series.values.map(function (_, i) { return colour(i); });
        set.borderColor = "#fff";
      }
      return set;
    });
  }

  function scales(spec) {
    if (spec.kind === "pie") return {};
    var numericX = spec.labels.every(function (label) { return typeof label === "number"; });
    var stacked = spec.stacked && (spec.kind === "bar" || spec.kind === "area");
    var x = { title: { display: true, text: spec.x_title || "" }, stacked: stacked };
    if (spec.kind === "scatter") x.type = numericX ? "linear" : "category";
    if (spec.kind === "scatter" && !numericX) x.labels = spec.labels;
    return {
      x: x,
      y: { title: { display: true, text: spec.y_title }, stacked: stacked,
        beginAtZero: spec.kind === "bar" || spec.kind === "area" },
    };
  }

  function draw(canvas) {
    var spec = mlopsCharts.spec(canvas, "dashboardChart");
    if (!spec) return;
    var many = spec.series.length > 1 || spec.kind === "pie";
    new Chart(canvas, {
      type: CANVAS_TYPES[spec.kind] || "bar",
      data: { labels: spec.kind === "scatter" ? undefined : spec.labels, datasets: datasets(spec) },
      options: mlopsCharts.options({
        interaction: { mode: spec.kind === "pie" ? "point" : "index", intersect: false },
        plugins: { legend: { display: many, position: "bottom" } },
        scales: scales(spec),
      }),
      plugins: [whiteBackground],
    });
    var link = document.querySelector("[data-png-for='" + canvas.id + "']");
    if (link) link.hidden = false;
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-dashboard-chart]").forEach(draw);
  }

  function sortable(root) {
    var grid = (root || document).querySelector("#chart-grid[data-sortable='true']");
    if (!grid || grid.dataset.ready || !window.Sortable) return;
    grid.dataset.ready = "true";
    window.Sortable.create(grid, {
      handle: ".drag-handle",
      draggable: ".chart-card",
      animation: 150,
      onEnd: function (event) {
        if (event.oldIndex === event.newIndex) return;
        grid.querySelectorAll(".chart-card").forEach(function (card, index, cards) {
          card.querySelector("button.move[value='up']").disabled = index === 0;
          card.querySelector("button.move[value='down']").disabled = index === cards.length - 1;
        });
        // Not Sortable's own "end", which also fires when nothing moved.
        grid.dispatchEvent(new Event("reordered"));  // hx-trigger="reordered": post the order
      },
    });
  }

  // The canvas as a PNG, made when the link is followed so that it shows what is drawn.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-png-for]");
    if (link) {
      var canvas = document.getElementById(link.dataset.pngFor);
      if (canvas) link.href = canvas.toDataURL("image/png");
      return;
    }
    if (event.target.closest("button[data-print]")) window.print();
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-print]").forEach(function (b) { b.hidden = false; });
    drawAll(document);
    sortable(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
