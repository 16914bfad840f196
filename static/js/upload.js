// New study: drag-and-drop of several files, an upload progress bar and a result beside each file.
// The server judges every file on its own; this script only collects them and shows its answer.
// Without JavaScript the form posts as usual and the page lists the files that were not added.
(function () {
  "use strict";
  var form = document.getElementById("study-form");
  if (!form || !window.FormData || !window.DataTransfer || !window.XMLHttpRequest) return;
  var input = form.querySelector('input[type="file"]');
  var zone = document.getElementById("dropzone");
  var list = document.getElementById("file-list");
  var progress = document.getElementById("upload-progress");
  var bar = document.getElementById("progress-bar");
  var progressText = document.getElementById("progress-text");
  var percent = document.getElementById("progress-percent");
  var outcome = document.getElementById("upload-outcome");
  var actions = document.getElementById("form-actions");
  var button = document.getElementById("submit-button");
  var patientErrors = document.getElementById("patient-errors");
  var imageErrors = document.getElementById("images-errors");
  var maxFiles = parseInt(form.dataset.maxFiles, 10);
  var maxSlices = parseInt(form.dataset.maxSlices, 10);
  var maxBytes = parseInt(form.dataset.maxMb, 10) * 1048576;
  var maxSeriesBytes = parseInt(form.dataset.maxSeriesMb, 10) * 1048576;
  var folderInput = document.getElementById("folder-input");

  // A .zip or a NIfTI volume holds a whole series: it may be as large as a series.
  function limitOf(file) {
    return /\.(zip|nii|nii\.gz)$/i.test(file.name) ? maxSeriesBytes : maxBytes;
  }

  var chosen = [];     // {file, name, state: "ready" | "too-large" | "added" | "rejected", note}
  var uploading = false;
  var submitted = false;  // the study exists: the list only reports what happened to each file

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function size(bytes) {
    if (bytes < 1024) return bytes + (bytes === 1 ? " byte" : " bytes");
    return bytes < 1048576 ? Math.round(bytes / 1024) + " KB" : (bytes / 1048576).toFixed(1) + " MB";
  }

  // Two files may share a name (scan.png from two folders); the server reports rejections by name.
  function uniqueName(name) {
    var taken = chosen.map(function (entry) { return entry.name; });
    if (taken.indexOf(name) < 0) return name;
    var dot = name.lastIndexOf(".");
    var stem = dot > 0 ? name.slice(0, dot) : name;
    var ext = dot > 0 ? name.slice(dot) : "";
    for (var n = 2; ; n++) {
      var candidate = stem + " (" + n + ")" + ext;
      if (taken.indexOf(candidate) < 0) return candidate;
    }
  }

  function sameFile(a, b) {
    return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
  }

  function add(files) {
    Array.prototype.forEach.call(files, function (file) {
      if (chosen.some(function (entry) { return sameFile(entry.file, file); })) return;
      var tooLarge = file.size > limitOf(file);
      chosen.push({ file: file, name: uniqueName(file.name), state: tooLarge ? "too-large" : "ready",
                    note: tooLarge ? "Larger than " + size(limitOf(file)) + ": it will not be sent" : "Ready" });
    });
    sync();
  }

  // The input keeps the same files as the list, so the native control says how many are chosen.
  function sync() {
    var transfer = new DataTransfer();
    chosen.forEach(function (entry) { transfer.items.add(entry.file); });
    input.files = transfer.files;
    render();
  }

  function render() {
    list.textContent = "";
    list.hidden = chosen.length === 0;
    chosen.forEach(function (entry, index) {
      var item = el("li", "file-item file-" + entry.state);
      item.dataset.filename = entry.name;
      var about = el("div", "file-about");
      about.appendChild(el("span", "file-name", entry.name));
      about.appendChild(el("span", "file-size", size(entry.file.size)));
      item.appendChild(about);
      item.appendChild(el("span", "file-note", entry.note));
      if (!uploading && !submitted && entry.state !== "added") {
        var remove = el("button", "button small quiet", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", "Remove " + entry.name);
        remove.addEventListener("click", function () {
          chosen.splice(index, 1);
          sync();
          (list.querySelector("button") || input).focus();
        });
        item.appendChild(remove);
      }
      list.appendChild(item);
    });
  }

  function showErrors(container, messages) {
    container.textContent = "";
    (messages || []).forEach(function (message) { container.appendChild(el("p", null, message)); });
  }

  function setProgress(value, label) {
    bar.value = value;
    bar.textContent = value + "%";
    percent.textContent = value + "%";
    if (label) progressText.textContent = label;
  }

  function finish() {
    uploading = false;
    button.disabled = false;
    progress.hidden = true;
  }

  function applyRejections(rejected) {
    var reasons = {};
    (rejected || []).forEach(function (r) { reasons[r.filename] = r.reason; });
    chosen.forEach(function (entry) {
      if (reasons[entry.name]) { entry.state = "rejected"; entry.note = "Not added: " + reasons[entry.name]; }
    });
  }

  function created(body) {
    applyRejections(body.rejected);
    var notAdded = chosen.filter(function (entry) { return entry.state !== "ready"; }).length;
    if (notAdded === 0) { window.location.assign(body.url); return; }
    chosen.forEach(function (entry) {
      if (entry.state === "ready") { entry.state = "added"; entry.note = "Added to the study"; }
      else if (entry.state === "too-large") entry.note = "Not sent: larger than " + size(limitOf(entry.file));
    });
    submitted = true;
    render();
    actions.hidden = true;
    input.disabled = true;
    zone.classList.add("done");
    outcome.textContent = "";
    outcome.className = "upload-outcome outcome-partial";
    var added = chosen.length - notAdded;
    outcome.appendChild(el("p", null, "The study was created with " + added + " file" + (added === 1 ? "" : "s") +
      ". " + notAdded + " file" + (notAdded === 1 ? " was" : "s were") + " not added; the reasons are shown beside " +
      (notAdded === 1 ? "it" : "them") + "."));
    var links = el("p", "outcome-actions");
    var open = el("a", "button primary", "Open the study");
    open.href = body.url;
    open.id = "open-study";
    var again = el("a", null, "Start another study");
    again.href = window.location.pathname;
    links.appendChild(open);
    links.appendChild(again);
    outcome.appendChild(links);
    outcome.hidden = false;
    open.focus();
  }

  function refused(status, body, responseUrl) {
    applyRejections(body.rejected);
    render();
    var errors = body.errors || {};
    showErrors(patientErrors, errors.patient);
    var messages = errors.images || errors.__all__ || [];
    if (status === 413) messages = ["The upload is too large. Send fewer or smaller files at a time."];
    else if (/\/login\//.test(responseUrl || "")) messages = ["Your session has ended. Log in again in another tab, " +
                                                               "then submit once more; nothing was stored."];
    else if (!messages.length && !errors.patient) messages = ["The server could not take the upload (error " + status +
                                                              "); nothing was stored. Please try again."];
    showErrors(imageErrors, messages);
    if (errors.patient) form.querySelector("select").focus();
    else if (imageErrors.firstChild) input.focus();
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      if (!uploading && !input.disabled) zone.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (!uploading && !input.disabled && event.dataTransfer) add(event.dataTransfer.files);
  });
  // A click anywhere in the drop zone opens the file chooser, like a click on its button.
  zone.addEventListener("click", function (event) {
    if (event.target.closest(".folder-choice")) return;  // the folder button opens its own chooser
    if (event.target !== input && !input.disabled && !uploading) input.click();
  });
  input.addEventListener("change", function () {
    var picked = Array.prototype.slice.call(input.files);
    var fresh = picked.filter(function (file) { return !chosen.some(function (e) { return sameFile(e.file, file); }); });
    add(fresh);
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (uploading) return;
    showErrors(patientErrors, []);
    showErrors(imageErrors, []);
    // A file the server rejected would be rejected again: it stays listed, with its reason, until removed.
    var sendable = chosen.filter(function (entry) { return entry.state === "ready"; });
    if (!sendable.length) {
      showErrors(imageErrors, [chosen.length ? "None of the chosen files can be used: add other files."
                                             : "Choose at least one image to upload."]);
      input.focus();
      return;
    }
    if (sendable.length > Math.max(maxFiles, maxSlices)) {
      showErrors(imageErrors, ["A study holds at most " + maxFiles + " separate files, or one series of at most " +
                               maxSlices + " slices; " + sendable.length + " files are chosen."]);
      input.focus();
      return;
    }
    var data = new FormData(form);
    data.delete(input.name);
    sendable.forEach(function (entry) {
      entry.note = "Sending";
      data.append(input.name, entry.file, entry.name);
    });
    uploading = true;
    render();
    var request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) setProgress(Math.round((e.loaded / e.total) * 100));
    });
    request.upload.addEventListener("load", function () {
      setProgress(100, sendable.length > 1 || /\.(zip|nii|nii\.gz)$/i.test(sendable[0].name)
        ? "Checking and de-identifying the images (a whole series takes a few seconds)" : "Checking the images");
    });
    request.addEventListener("load", function () {
      finish();
      var body = {};
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = {}; }
      chosen.forEach(function (entry) { if (entry.state === "ready") entry.note = "Ready"; });
      if (request.status === 201 && body.url) created(body);
      else refused(request.status, body, request.responseURL);
    });
    request.addEventListener("error", function () {
      finish();
      chosen.forEach(function (entry) { if (entry.state === "ready") entry.note = "Ready"; });
      render();
      showErrors(imageErrors, ["The connection was lost during the upload; nothing was stored. Please try again."]);
    });
    button.disabled = true;
    progress.hidden = false;
    setProgress(0, "Uploading");
    request.send(data);
  });

  // A DICOM series is often a folder of files: the folder button adds every file in it.
  if (folderInput) folderInput.addEventListener("change", function () {
    add(folderInput.files);
    folderInput.value = "";
  });
})();
