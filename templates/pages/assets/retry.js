/* recoup retry pages: status polling (QR and "confirming" pages) and the Stripe card form. No dependencies. */
(function () {
  'use strict';

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
