/* global document, Chart */
// recoup dashboard: draws the charts from the report data the page carries in
// #dashboard[data-report] (no inline script: the console's CSP allows only recoup's files).
// Amounts arrive in minor units; charts show major units of the page's one currency.
(function () {
  'use strict';
  var root = document.getElementById('dashboard');
  if (!root || typeof Chart === 'undefined') return;
  var data = JSON.parse(root.getAttribute('data-report') || '{}');
  var t = data.strings || {};
  var digits = new Intl.NumberFormat('en', { style: 'currency', currency: data.currency }).resolvedOptions()
    .maximumFractionDigits;
  var major = function (minor) {
    return minor / Math.pow(10, digits);
  };
  var money = new Intl.NumberFormat(data.lang, { style: 'currency', currency: data.currency });
  var palette = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2'];
  var common = { responsive: true, maintainAspectRatio: false, animation: false };

  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) new Chart(canvas, config);
  }

  function rateChart(id, rows, label) {
    draw(id, {
      type: 'bar',
      data: {
        labels: rows.map(function (r) {
          return label ? label(r.key) : r.key;
        }),
        datasets: [
          {
            label: t.rateAxis,
            data: rows.map(function (r) {
              return r.recovery_rate === null ? 0 : Math.round(r.recovery_rate * 1000) / 10;
            }),
            backgroundColor: palette[0],
          },
        ],
      },
      options: Object.assign({}, common, {
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, suggestedMax: 100, title: { display: true, text: t.rateAxis } } },
      }),
    });
  }

  // Recovered revenue per day, stacked by channel.
  var days = data.days.map(function (d) {
    return d.key;
  });
  var channels = [];
  data.revenueByChannel.forEach(function (r) {
    if (channels.indexOf(r.channel) < 0) channels.push(r.channel);
  });
  draw('chart-revenue', {
    type: 'bar',
    data: {
      labels: days,
      datasets: channels.map(function (channel, i) {
        return {
          label: channel,
          backgroundColor: palette[i % palette.length],
          data: days.map(function (day) {
            var found = data.revenueByChannel.filter(function (r) {
              return r.day === day && r.channel === channel;
            })[0];
            return found ? major(found.amount) : 0;
          }),
        };
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
  var f = data.funnel;
  draw('chart-funnel', {
    type: 'bar',
    data: {
      labels: [t.entered, t.messaged, t.clicked, t.recovered],
      datasets: [{ data: [f.entered, f.messaged, f.clicked, f.recovered], backgroundColor: palette.slice(0, 4) }],
    },
    options: Object.assign({}, common, { indexAxis: 'y', plugins: { legend: { display: false } } }),
  });

  rateChart('chart-step', data.byStep, function (key) {
    return t.step + ' ' + key;
  });
  rateChart('chart-category', data.byCategory);
  rateChart('chart-method', data.byMethod);

  var h = data.holdout;
  if (h && h.control.orders > 0) {
    draw('chart-holdout', {
      type: 'bar',
      data: {
        labels: [t.treated + ' (' + h.treated.orders + ')', t.control + ' (' + h.control.orders + ')'],
        datasets: [
          {
            label: t.rateAxis,
            data: [(h.treated.rate || 0) * 100, (h.control.rate || 0) * 100],
            backgroundColor: [palette[0], palette[2]],
          },
        ],
      },
      options: Object.assign({}, common, {
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, suggestedMax: 100 } },
      }),
    });
  }
  root.setAttribute('data-charts', 'drawn');
})();
