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
  // A release's per-version numbers (data-versions, from the measurements API): requests,
  // and failures of stable and candidate side by side (the table beside has the latencies).
  function drawRelease(el) {
    var v = JSON.parse(el.dataset.versions);
    var names = ["stable", "candidate"];
    function pick(f) { return names.map(function (n) { return f(v[n]); }); }
    echarts.init(el).setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 90, right: 20, top: 28, bottom: 20 },
      yAxis: { type: "category", data: names },
      xAxis: [{ type: "value", min: 0 }],
      series: [
        { name: "requests", type: "bar", data: pick(function (x) { return x.requests; }) },
        { name: "failures", type: "bar", data: pick(function (x) { return x.failures; }) }
      ]
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (typeof echarts !== "undefined") {
      document.querySelectorAll(".release-chart[data-versions]").forEach(drawRelease);
    }
    var els = document.querySelectorAll(".chart[data-metric]");
    if (!els.length || typeof echarts === "undefined") { return; }
    els.forEach(function (el) { charts.push({ el: el, chart: echarts.init(el) }); });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.chart.resize(); }); });
    poll();
    setInterval(poll, 2000);
  });
})();
