// Study page: keeps itself up to date while the study waits or runs, and drives the heatmap controls.
(function () {
  "use strict";
  var panel = document.getElementById("study-panel");
  if (!panel) return;
  var POLL_MS = 1500;

  function setFractions(root) {
    root.querySelectorAll("[data-fraction]").forEach(function (el) {
      var value = Math.max(0, Math.min(1, parseFloat(el.dataset.fraction) || 0));
      el.style.setProperty("--value", (value * 100).toFixed(2) + "%");
    });
  }

  function wireHeatmaps(root) {
    root.querySelectorAll("[data-scan]").forEach(function (figure) {
      var heatmap = figure.querySelector("[data-heatmap]");
      var toggle = figure.querySelector("[data-heatmap-toggle]");
      var opacity = figure.querySelector("[data-heatmap-opacity]");
      if (!heatmap) return;
      if (toggle) toggle.addEventListener("change", function () { heatmap.classList.toggle("hidden", !toggle.checked); });
      if (opacity) opacity.addEventListener("input", function () { heatmap.style.opacity = opacity.value / 100; });
    });
  }

  function refreshPanel() {
    return fetch(panel.dataset.panelUrl, { credentials: "same-origin" })
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.text(); })
      .then(function (html) { panel.innerHTML = html; setFractions(panel); wireHeatmaps(panel); });
  }

  function poll() {
    fetch(panel.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
      .then(function (state) {
        if (state.status !== panel.dataset.status) {
          panel.dataset.status = state.status;
          return refreshPanel().then(function () { return state; });
        }
        return state;
      })
      .then(function (state) { if (state.active) setTimeout(poll, POLL_MS); })
      .catch(function () { setTimeout(poll, POLL_MS * 4); });
  }

  setFractions(panel);
  wireHeatmaps(panel);
  var printButton = document.getElementById("print-button");
  if (printButton) printButton.addEventListener("click", function () { window.print(); });
  if (panel.dataset.status === "queued" || panel.dataset.status === "processing") setTimeout(poll, POLL_MS);
})();
