// Turnout console: the only script of the pages besides htmx and ECharts (the CSP
// allows no inline script). It draws the overview's charts from /ui/live/series.
"use strict";
(function () {
  var charts = [];
  function draw(data) {
    charts.forEach(function (c) {
      var metric = c.el.dataset.metric;
      var series = Object.keys(data.routes).map(function (name) {
        return {
          name: name, type: "line", showSymbol: false, connectNulls: false,
          data: data.t.map(function (t, i) { return [t, data.routes[name][metric][i]]; })
        };
      });
      c.chart.setOption({
        animation: false,
        title: { text: c.el.dataset.title, textStyle: { fontSize: 12 } },
        tooltip: { trigger: "axis" },
        grid: { left: 45, right: 10, top: 30, bottom: 25 },
        xAxis: { type: "value", min: -120, max: 0, axisLabel: { formatter: "{value}s" } },
        yAxis: { type: "value", min: 0 },
        series: series
      }, { replaceMerge: ["series"] });
    });
  }
  function poll() {
    fetch("/ui/live/series", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { window.location = "/ui/login"; return null; }
      return r.json();
    }).then(function (data) { if (data) { draw(data); } }).catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    var els = document.querySelectorAll(".chart[data-metric]");
    if (!els.length || typeof echarts === "undefined") { return; }
    els.forEach(function (el) { charts.push({ el: el, chart: echarts.init(el) }); });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.chart.resize(); }); });
    poll();
    setInterval(poll, 2000);
  });
})();
