// Study page: keeps itself up to date while the study waits or runs, and drives the heatmap controls.
(function () {
  "use strict";
  var panel = document.getElementById("study-panel");
  if (!panel) return;
  var announcer = document.getElementById("status-announcer");
  var POLL_MS = 1500;
  var MAX_POLL_MS = 10000;
  var delay = POLL_MS;

  function scanOf(control) { return control.closest("[data-scan]"); }

  // Delegated, so the controls keep working after the panel is replaced.
  panel.addEventListener("change", function (event) {
    if (!event.target.matches("[data-heatmap-toggle]")) return;
    var figure = scanOf(event.target);
    var shown = event.target.checked;
    figure.querySelector("[data-heatmap]").classList.toggle("hidden", !shown);
    figure.querySelector("[data-heatmap-opacity]").disabled = !shown;
  });
  panel.addEventListener("input", function (event) {
    if (!event.target.matches("[data-heatmap-opacity]")) return;
    var figure = scanOf(event.target);
    figure.querySelector("[data-heatmap]").style.opacity = event.target.value / 100;
    figure.querySelector("[data-heatmap-opacity-value]").textContent = event.target.value + "%";
  });

  function announce(state) {
    var words = { queued: "The study is waiting for the analysis service.",
                  processing: "The network is analysing the images.",
                  completed: "The analysis is complete.",
                  unassessable: "The study cannot be assessed by the model: read it by hand.",
                  failed: "The analysis failed.",
                  cancelled: "The study was cancelled." };
    var result = panel.querySelector("#result-badge");
    announcer.textContent = (words[state.status] || state.status) + (result ? " Result: " + result.textContent + "." : "");
  }

  function refreshPanel() {
    return fetch(panel.dataset.panelUrl, { credentials: "same-origin" })
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.text(); })
      .then(function (html) {
        panel.innerHTML = html;
        if (window.BrainScanSeries) window.BrainScanSeries.start(panel);
      });
  }

  // A series shows how far the worker has got ("87 of 150 assessed") without redrawing the page.
  function showProgress(state) {
    var progress = document.getElementById("series-progress");
    if (progress && state.progress) progress.textContent = state.progress.done + " of " + state.progress.total + " assessed";
  }

  function poll() {
    fetch(panel.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
      .then(function (state) {
        showProgress(state);
        if (state.status === panel.dataset.status) return state;
        return refreshPanel().then(function () {
          panel.dataset.status = state.status;
          announce(state);
          return state;
        });
      })
      .then(function (state) {
        if (!state.active) return;
        delay = Math.min(delay * 1.15, MAX_POLL_MS);  // a long wait is checked less and less often
        setTimeout(poll, delay);
      })
      .catch(function () { setTimeout(poll, MAX_POLL_MS); });
  }

  // A printed report shows the feature tables, even where they are folded on screen.
  var unfolded = [];
  window.addEventListener("beforeprint", function () {
    unfolded = Array.prototype.filter.call(panel.querySelectorAll("details:not([open])"), function (details) {
      details.open = true;
      return true;
    });
  });
  window.addEventListener("afterprint", function () {
    unfolded.forEach(function (details) { details.open = false; });
    unfolded = [];
  });
  var printButton = document.getElementById("print-button");
  if (printButton) printButton.addEventListener("click", function () { window.print(); });

  if (panel.dataset.status === "queued" || panel.dataset.status === "processing") setTimeout(poll, POLL_MS);
})();
