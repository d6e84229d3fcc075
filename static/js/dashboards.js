/* User dashboards: charts drawn from data the server has aggregated, drag-and-drop order,
 * PNG download (also of the KPI, table and heat map, redrawn on a canvas) and print.
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

  // KPI, table and heat map are HTML, not canvases: for their PNG the card's title, number
  // or cells are drawn again on an offscreen canvas, in the fonts and colours the page shows.
  var PAD = 16;           // around the picture, CSS pixels
  var CELL_PAD = 8;       // either side of a cell's text
  var MAX_CELL = 320;     // wider text is cut with "…"
  var MAX_ROWS = 500;     // of a table, so that the canvas stays within the browser's limits
  var measurer = document.createElement("canvas").getContext("2d");

  // What an element shows (not what only screen readers get): its text, font, colour,
  // alignment and, for a cell, background and column span.
  function look(element) {
    var style = getComputedStyle(element);
    var shown = element.cloneNode(true);
    shown.querySelectorAll(".sr-only").forEach(function (hidden) { hidden.remove(); });
    return {
      text: shown.textContent.trim(),
      font: [style.fontStyle, style.fontWeight, style.fontSize, style.fontFamily].join(" "),
      size: parseFloat(style.fontSize),
      colour: style.color,
      background: style.backgroundColor,
      align: style.textAlign === "right" || style.textAlign === "center" ? style.textAlign : "left",
      span: element.colSpan || 1,
    };
  }

  function textWidth(line) {
    measurer.font = line.font;
    return measurer.measureText(line.text).width;
  }

  // `text` shortened with "…" to fit `width` in the context's current font.
  function fit(context, text, width) {
    if (context.measureText(text).width <= width) return text;
    while (text && context.measureText(text + "…").width > width) text = text.slice(0, -1);
    return text + "…";
  }

  // `line` broken into lines no wider than `width`, at spaces.
  function wrap(line, width) {
    var lines = [];
    line.text.split(" ").forEach(function (word) {
      var last = lines[lines.length - 1];
      var longer = last && Object.assign({}, last, { text: last.text + " " + word });
      if (longer && textWidth(longer) <= width) lines[lines.length - 1] = longer;
      else lines.push(Object.assign({}, line, { text: word }));
    });
    return lines;
  }

  function write(context, line, x, y, width) {
    context.font = line.font;
    context.fillStyle = line.colour;
    context.textAlign = line.align;
    var at = line.align === "left" ? x : line.align === "right" ? x + width : x + width / 2;
    context.fillText(fit(context, line.text, width), at, y);
  }

  // A data: URL of a white PNG, width × height CSS pixels, on which paint(context) draws.
  function png(width, height, paint) {
    var scale = Math.min(2, 16000 / Math.max(width, height));  // sharp, within the limits
    var canvas = document.createElement("canvas");
    canvas.width = Math.ceil(width * scale);
    canvas.height = Math.ceil(height * scale);
    var context = canvas.getContext("2d");
    context.scale(scale, scale);
    context.fillStyle = "#fff";
    context.fillRect(0, 0, width, height);
    context.textBaseline = "middle";
    paint(context);
    return canvas.toDataURL("image/png");
  }

  // Lines of text under one another, each 1.5 times its font size high.
  function stack(context, lines, y, width) {
    lines.forEach(function (line) {
      var height = line.size * 1.5;
      write(context, line, PAD, y + height / 2, width);
      y += height;
    });
    return y;
  }

  function sum(numbers) {
    return numbers.reduce(function (a, b) { return a + b; }, 0);
  }

  function height(lines) {
    return sum(lines.map(function (line) { return line.size * 1.5; }));
  }

  function kpiPng(card) {
    var title = look(card.querySelector("h2"));
    var body = [card.querySelector(".kpi-value"), card.querySelector(".kpi-label")].map(look);
    body.forEach(function (line) { line.align = "center"; });
    var width = Math.max(360, Math.max.apply(null, [title].concat(body).map(textWidth)));
    return png(width + 2 * PAD, PAD + title.size * 1.5 + 48 + height(body) + 48, function (c) {
      stack(c, body, stack(c, [title], PAD, width) + 48, width);
    });
  }

  // A table or heat map: its rows of cells, with their backgrounds; then its caption and note.
  function tablePng(card) {
    var title = look(card.querySelector("h2"));
    var all = card.querySelectorAll(".chart-table tr");
    var rows = [].slice.call(all, 0, MAX_ROWS + 1)  // the head and MAX_ROWS rows
      .map(function (row) { return [].map.call(row.cells, look); });
    var notes = [card.querySelector(".chart-table caption"), card.querySelector(".chart-note")]
      .filter(Boolean).map(look);  // wrapped below, once the width is known
    if (all.length > rows.length) {
      var cut = look(card.querySelector(".chart-source"));  // in the style of a muted note
      cut.text = "This picture shows the first " + MAX_ROWS + " of " + (all.length - 1) +
        " rows; the CSV has them all.";
      notes.push(cut);
    }
    var columns = [];
    rows.forEach(function (cells) {
      cells.forEach(function (cell, i) {
        if (cell.span === 1) columns[i] = Math.max(columns[i] || 0, textWidth(cell));
      });
    });
    columns = columns.map(function (w) { return Math.min(MAX_CELL, w + 2 * CELL_PAD); });
    var rowHeight = Math.round(rows[0][0].size * 1.9);
    var gridWidth = sum(columns);
    var width = Math.max(gridWidth, textWidth(title));
    notes = [].concat.apply([], notes.map(function (note) { return wrap(note, width); }));
    var total = PAD + title.size * 1.5 + 8 + rows.length * rowHeight + 8 + height(notes) + PAD;
    return png(width + 2 * PAD, total, function (context) {
      var y = stack(context, [title], PAD, width) + 8;
      rows.forEach(function (cells) {
        var x = PAD;
        cells.forEach(function (cell, i) {
          var cellWidth = sum(columns.slice(i, i + cell.span));
          if (!/^rgba\(.*, 0\)$|^transparent$/.test(cell.background)) {
            context.fillStyle = cell.background;
            context.fillRect(x + 0.5, y + 0.5, cellWidth - 1, rowHeight - 1);
          }
          write(context, cell, x + CELL_PAD, y + rowHeight / 2, cellWidth - 2 * CELL_PAD);
          x += cellWidth;
        });
        context.fillStyle = "#e5e7eb";
        context.fillRect(PAD, y + rowHeight - 0.5, gridWidth, 1);  // the line under each row
        y += rowHeight;
      });
      stack(context, notes, y + 8, width);
    });
  }

  // The card's PNG as a data: URL, or null when it holds none of these kinds.
  function htmlPng(card) {
    if (card.querySelector(".kpi")) return kpiPng(card);
    if (card.querySelector(".chart-table tr")) return tablePng(card);
    return null;
  }

  function showHtmlPngLinks(root) {
    (root || document).querySelectorAll("a[data-png-of]").forEach(function (link) {
      link.hidden = false;
    });
  }

  // The canvas (or the card redrawn) as a PNG, made when the link is followed so that it
  // shows what is drawn.
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-png-for]");
    if (link) {
      var canvas = document.getElementById(link.dataset.pngFor);
      if (canvas) link.href = canvas.toDataURL("image/png");
      return;
    }
    var html = event.target.closest("a[data-png-of]");
    if (html) {
      var card = document.getElementById(html.dataset.pngOf);
      var url = card && htmlPng(card);
      if (url) html.href = url;
      else event.preventDefault();
      return;
    }
    if (event.target.closest("button[data-print]")) window.print();
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-print]").forEach(function (b) { b.hidden = false; });
    drawAll(document);
    showHtmlPngLinks(document);
    sortable(document);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    drawAll(event.target);
    showHtmlPngLinks(event.target);
  });
})();
