// Story editor: clicking a slide in the graph selects that slide's lines in the YAML text.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var node = event.target.closest && event.target.closest(".graph .node");
    if (!node) return;
    event.preventDefault();
    var area = document.querySelector(".yaml-form textarea");
    if (!area) return;
    var id = node.getAttribute("data-slide");
    var match = new RegExp("^  " + id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + ":\\s*$", "m").exec(area.value);
    if (!match) return;
    area.focus();
    area.setSelectionRange(match.index, match.index + match[0].length);
    var line = area.value.slice(0, match.index).split("\n").length;
    area.scrollTop = Math.max(0, (line - 3) * parseFloat(getComputedStyle(area).lineHeight || "18"));
  });
})();
