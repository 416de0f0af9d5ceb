/* global document, Chart */
// recoup dashboard: draws the charts from the data the page carries in #dashboard[data-report]
// (no inline script: the console's CSP allows only recoup's files). The server sends every label
// in the page's language and every amount in major units of the page's one currency
// (src/console/dashboard-view.ts), so this script only draws.
(function () {
  'use strict';
  var root = document.getElementById('dashboard');
  if (!root || typeof Chart === 'undefined') return;
  var data = JSON.parse(root.getAttribute('data-report') || 'null');
  if (!data) return;
  var money = new Intl.NumberFormat(data.lang, { style: 'currency', currency: data.currency });
  var palette = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2'];
  var common = { responsive: true, maintainAspectRatio: false, animation: false };

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) new Chart(canvas, config);
  }

  function rateChart(id, chart, colours) {
    draw(id, {
      type: 'bar',
      data: {
        labels: chart.labels,
        datasets: [{ label: data.rateAxis, data: chart.data, backgroundColor: colours || palette[0] }],
      },
      options: Object.assign({}, common, {
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, suggestedMax: 100, title: { display: true, text: data.rateAxis } } },
      }),
    });
  }

  // Recovered revenue per day, stacked by channel.
  draw('chart-revenue', {
    type: 'bar',
    data: {
      labels: data.revenue.labels,
      datasets: data.revenue.series.map(function (series, i) {
        return { label: series.label, data: series.data, backgroundColor: palette[i % palette.length] };
      }),
    },
    options: Object.assign({}, common, {
      scales: {
        x: { stacked: true },
        y: {
          stacked: true,
          ticks: {
            callback: function (v) {
              return money.format(v);
            },
          },
        },
      },
    }),
  });

  // Entered → messaged → clicked → paid.
  draw('chart-funnel', {
    type: 'bar',
    data: {
      labels: data.funnel.labels,
      datasets: [{ data: data.funnel.data, backgroundColor: palette.slice(0, 4) }],
    },
    options: Object.assign({}, common, { indexAxis: 'y', plugins: { legend: { display: false } } }),
  });

  rateChart('chart-step', data.byStep);
  rateChart('chart-category', data.byCategory);
  rateChart('chart-method', data.byMethod);
  if (data.holdout) rateChart('chart-holdout', data.holdout, [palette[0], palette[2]]);
  root.setAttribute('data-charts', 'drawn');
})();
