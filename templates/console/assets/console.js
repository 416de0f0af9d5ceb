/* global document */
// recoup console: small conveniences for the cadence editor. Everything works without it.
// - Tab in the YAML editor indents by two spaces instead of leaving the field
//   (Escape, then Tab, still moves focus on).
// - Ctrl/Cmd+S saves (the "Save" button, never "Save & activate").
(function () {
  'use strict';
  var editor = document.getElementById('yaml');
  if (!editor) return;
  var escaped = false;
  editor.addEventListener('keydown', function (event) {
    if (event.key === 'Escape') {
      escaped = true;
      return;
    }
    if (event.key === 'Tab' && !event.shiftKey && !escaped && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      var start = editor.selectionStart;
      var end = editor.selectionEnd;
      editor.setRangeText('  ', start, end, 'end');
      return;
    }
    escaped = false;
    if ((event.ctrlKey || event.metaKey) && (event.key === 's' || event.key === 'S')) {
      event.preventDefault();
      var save = document.getElementById('save');
      if (save && editor.form) editor.form.requestSubmit(save);
    }
  });
})();
