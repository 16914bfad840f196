// New study: drag-and-drop, upload progress and per-file results. Without JavaScript the form still works.
(function () {
  "use strict";
  var form = document.getElementById("study-form");
  if (!form || !window.FormData || !window.DataTransfer) return;
  var input = form.querySelector('input[type="file"]');
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("file-list");
  var progress = document.getElementById("upload-progress");
  var bar = document.getElementById("progress-bar");
  var button = document.getElementById("submit-button");
  var patientErrors = document.getElementById("patient-errors");
  var imageErrors = document.getElementById("images-errors");
  var maxMb = parseInt(form.dataset.maxMb, 10);

  function text(tag, value, className) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (className) el.className = className;
    return el;
  }

  function renderFiles(results) {
    list.textContent = "";
    Array.prototype.forEach.call(input.files, function (file) {
      var item = document.createElement("li");
      item.dataset.filename = file.name;
      item.appendChild(text("span", file.name + " (" + (file.size / 1048576).toFixed(1) + " MB)"));
      var note = results && results[file.name];
      if (note) item.appendChild(text("span", note.text, note.ok ? "file-ok" : "file-error"));
      else if (file.size > maxMb * 1048576) item.appendChild(text("span", "Larger than " + maxMb + " MB", "file-error"));
      list.appendChild(item);
    });
  }

  function showErrors(container, messages) {
    container.textContent = "";
    (messages || []).forEach(function (message) { container.appendChild(text("p", message)); });
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    var transfer = new DataTransfer();
    Array.prototype.forEach.call(input.files, function (file) { transfer.items.add(file); });
    Array.prototype.forEach.call(event.dataTransfer.files, function (file) { transfer.items.add(file); });
    input.files = transfer.files;
    renderFiles();
  });
  input.addEventListener("change", function () { renderFiles(); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    showErrors(patientErrors, []);
    showErrors(imageErrors, []);
    var request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { bar.value = Math.round((e.loaded / e.total) * 100); bar.textContent = bar.value + "%"; }
    });
    request.addEventListener("load", function () {
      button.disabled = false;
      progress.hidden = true;
      var body = {};
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = {}; }
      var results = {};
      (body.rejected || []).forEach(function (r) { results[r.filename] = { ok: false, text: r.reason }; });
      if (request.status === 201) {
        if (!body.rejected || body.rejected.length === 0) { window.location.assign(body.url); return; }
        Array.prototype.forEach.call(input.files, function (file) {
          if (!results[file.name]) results[file.name] = { ok: true, text: "Submitted" };
        });
        renderFiles(results);
        var link = text("a", "Open the study", "button primary");
        link.href = body.url;
        imageErrors.textContent = "";
        imageErrors.appendChild(text("p", "The other files were submitted; the files marked above were not added."));
        imageErrors.appendChild(link);
        link.focus();
        return;
      }
      if (request.status === 413) { showErrors(imageErrors, ["The upload is too large. Send fewer or smaller files."]); return; }
      var errors = body.errors || {};
      showErrors(patientErrors, errors.patient);
      showErrors(imageErrors, errors.images || (request.status >= 500 ? ["The server could not take the upload; please try again."] : []));
      renderFiles(results);
    });
    request.addEventListener("error", function () {
      button.disabled = false;
      progress.hidden = true;
      showErrors(imageErrors, ["The connection was lost during the upload; nothing was stored. Please try again."]);
    });
    button.disabled = true;
    progress.hidden = false;
    bar.value = 0;
    request.send(new FormData(form));
  });
})();
