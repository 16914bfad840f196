// Worklist: "select all" and an export button that says what it will export.
(function () {
  "use strict";
  var form = document.getElementById("export-form");
  if (!form) return;
  var all = document.getElementById("select-all");
  var button = document.getElementById("export-button");
  var boxes = form.querySelectorAll('input[name="id"]');
  var total = parseInt(button.dataset.count, 10);

  function update() {
    var ticked = Array.prototype.filter.call(boxes, function (box) { return box.checked; }).length;
    all.checked = ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
    button.textContent = ticked ? "Export " + ticked + " selected to CSV"
                                : "Export all " + total + " listed to CSV";
  }

  all.addEventListener("change", function () {
    boxes.forEach(function (box) { box.checked = all.checked; });
    update();
  });
  form.addEventListener("change", function (event) { if (event.target.name === "id") update(); });
  update();
})();
