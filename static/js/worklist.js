// Worklist: "select all" for the CSV export.
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", function () {
    document.querySelectorAll('#export-form input[name="id"]').forEach(function (box) { box.checked = all.checked; });
  });
})();
