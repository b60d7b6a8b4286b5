// Number keys pick choices; after a swap, focus moves to the new slide's text for screen readers.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    if (!/^[1-9]$/.test(event.key)) return;
    var button = document.querySelector('#slide .choices [data-key="' + event.key + '"]');
    if (button) {
      event.preventDefault();
      button.click();
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "stage") {
      var text = document.getElementById("slide-text");
      if (text) text.focus({ preventScroll: true });
    }
  });
})();
