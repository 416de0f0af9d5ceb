/* recoup retry pages: the click report, status polling (QR and "confirming" pages) and the Stripe card form. No dependencies. */
(function () {
  'use strict';

  // A person opened the page: say so once it is on screen (link scanners fetch pages without running
  // scripts; a prerendered or background tab waits until it is shown). The page's CSRF token goes along.
  var clicked = document.querySelector('form[data-click-url]');
  if (clicked) {
    var reported = false;
    var report = function () {
      if (reported || (document.visibilityState && document.visibilityState !== 'visible')) return;
      reported = true;
      var url = clicked.getAttribute('data-click-url');
      var csrf = clicked.querySelector('input[name="csrf"]');
      var body = 'csrf=' + encodeURIComponent(csrf ? csrf.value : '');
      var type = 'application/x-www-form-urlencoded';
      var beacon = window.navigator.sendBeacon && window.Blob;
      var queued = beacon && window.navigator.sendBeacon(url, new window.Blob([body], { type: type }));
      if (!queued && window.fetch) {
        fetch(url, {
          method: 'POST',
          body: body,
          headers: { 'content-type': type },
          credentials: 'same-origin',
          keepalive: true,
        }).catch(function () {});
      }
      // The shop's own payment page: on there, leaving this page out of the history.
      var next = clicked.getAttribute('data-continue-url');
      if (next) window.location.replace(next);
    };
    report();
    if (!reported) document.addEventListener('visibilitychange', report);
  }

  var poll = document.querySelector('[data-poll-url]');
  if (poll && window.fetch) {
    // The page says it moves on by itself only now that it does.
    poll.hidden = false;
    var statusUrl = poll.getAttribute('data-poll-url');
    var doneUrl = poll.getAttribute('data-done-url');
    var failedUrl = poll.getAttribute('data-failed-url');
    var delay = 2000;
    var stopAt = Date.now() + 30 * 60 * 1000;
    var tick = function () {
      if (Date.now() > stopAt) return;
      fetch(statusUrl, { headers: { accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' })
        .then(function (response) {
          if (response.status === 404) return { status: 'failed' };
          // Rate limited or a hiccup: back off, keep going.
          if (!response.ok) {
            delay = Math.min(delay * 2, 30000);
            return null;
          }
          delay = 2000;
          return response.json();
        })
        .then(function (body) {
          var status = body && body.status;
          if (status === 'succeeded') return window.location.assign(doneUrl);
          if (status === 'failed' || status === 'cancelled') return window.location.assign(failedUrl);
          window.setTimeout(tick, delay);
        })
        .catch(function () {
          delay = Math.min(delay * 2, 30000);
          window.setTimeout(tick, delay);
        });
    };
    window.setTimeout(tick, delay);
  }

  var card = document.getElementById('card-form');
  if (card && typeof window.Stripe === 'function') {
    var stripe = window.Stripe(card.getAttribute('data-stripe-key'));
    var elements = stripe.elements({ clientSecret: card.getAttribute('data-client-secret') });
    elements.create('payment').mount('#payment-element');
    var button = card.querySelector('button[type="submit"]');
    var error = document.getElementById('card-error');
    var label = button.textContent;
    button.disabled = false;
    card.addEventListener('submit', function (event) {
      event.preventDefault();
      button.disabled = true;
      button.textContent = card.getAttribute('data-processing');
      error.hidden = true;
      stripe
        .confirmPayment({ elements: elements, confirmParams: { return_url: card.getAttribute('data-return-url') } })
        .then(function (result) {
          // Only reached when the payment could not be confirmed; success redirects to return_url.
          error.textContent = (result.error && result.error.message) || card.getAttribute('data-failed');
          error.hidden = false;
          button.disabled = false;
          button.textContent = label;
        });
    });
  }
})();
