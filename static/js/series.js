// The series viewer: scroll a volume slice by slice (wheel, arrow keys, slider, the probability strip),
// lay the heatmap over it, set window and level, jump to the most suspicious slice.
(function () {
  "use strict";

  function Viewer(root, data) {
    this.root = root;
    this.data = data;
    this.slices = data.slices;
    this.index = 0;
    this.canvas = root.querySelector("[data-scan-canvas]");
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
    this.heatmap = root.querySelector("[data-series-heatmap]");
    this.slider = root.querySelector("[data-slice-slider]");
    this.caption = root.querySelector("[data-slice-caption]");
    this.number = root.querySelector("[data-slice-number]");
    this.level = root.querySelector("[data-level]");
    this.width = root.querySelector("[data-width]");
    this.cache = {};
    this.bind();
    this.drawStrip();
    this.show(data.start || 0);
  }

  Viewer.prototype.bind = function () {
    var self = this;
    this.slider.addEventListener("input", function () { self.show(Number(self.slider.value) - 1); });
    this.root.querySelectorAll("[data-step]").forEach(function (button) {
      button.addEventListener("click", function () { self.show(self.index + Number(button.dataset.step)); });
    });
    var peak = this.root.querySelector("[data-jump-peak]");
    if (peak) peak.addEventListener("click", function () {
      if (self.data.peak !== null && self.data.peak !== undefined) self.show(self.indexOf(self.data.peak));
    });
    this.root.addEventListener("keydown", function (event) {
      if (event.target.matches("input")) return;  // a focused slider handles its own keys
      var moves = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 };
      if (event.key in moves) self.show(self.index + moves[event.key]);
      else if (event.key === "Home") self.show(0);
      else if (event.key === "End") self.show(self.slices.length - 1);
      else return;
      event.preventDefault();
    });
    this.root.querySelector("[data-stage]").addEventListener("wheel", function (event) {
      event.preventDefault();
      self.show(self.index + (event.deltaY > 0 ? 1 : -1));
    }, { passive: false });
    this.root.querySelector("[data-series-heatmap-toggle]").addEventListener("change", function (event) {
      self.heatmapShown = event.target.checked;
      self.showHeatmap();
    });
    this.heatmapShown = true;
    this.root.querySelector("[data-series-opacity]").addEventListener("input", function (event) {
      self.heatmap.style.opacity = event.target.value / 100;
    });
    [this.level, this.width].forEach(function (input) { input.addEventListener("input", function () { self.draw(); }); });
    this.root.querySelector("[data-window-reset]").addEventListener("click", function () {
      self.level.value = 128; self.width.value = 255; self.draw();
    });
  };

  Viewer.prototype.indexOf = function (position) {
    for (var i = 0; i < this.slices.length; i++) if (this.slices[i].position === position) return i;
    return 0;
  };

  Viewer.prototype.image = function (i) {
    var slice = this.slices[i];
    if (!this.cache[i]) {
      var img = new Image();
      img.src = slice.image_url;
      this.cache[i] = img;
    }
    return this.cache[i];
  };

  Viewer.prototype.show = function (i) {
    var self = this;
    this.index = Math.max(0, Math.min(this.slices.length - 1, i));
    var slice = this.slices[this.index];
    this.slider.value = this.index + 1;
    this.number.textContent = (this.index + 1) + " / " + this.slices.length;
    var words = "Slice " + (this.index + 1) + " of " + this.slices.length + ": ";
    if (slice.quality && slice.quality.status === "rejected") words += "cannot be assessed (" + slice.quality.message + ")";
    else if (slice.probability === null) words += "not assessed yet";
    else words += Math.round(slice.probability * 100) + "% tumor probability, " + (slice.label === "tumor" ? "tumor" : "no tumor");
    this.caption.textContent = words;
    this.canvas.setAttribute("aria-label", words);
    var img = this.image(this.index);
    if (img.complete && img.naturalWidth) this.draw();
    else img.onload = function () { if (self.slices[self.index] === slice) self.draw(); };
    [1, -1, 2].forEach(function (step) {  // the neighbours are ready before they are asked for
      var j = self.index + step;
      if (j >= 0 && j < self.slices.length) self.image(j);
    });
    this.showHeatmap();
    this.markStrip();
  };

  Viewer.prototype.showHeatmap = function () {
    var url = this.slices[this.index].heatmap_url;
    this.heatmap.hidden = !(url && this.heatmapShown);
    if (url && this.heatmap.getAttribute("src") !== url) this.heatmap.src = url;
  };

  // Window and level on the 8-bit display values the browser decoded: values below level - width / 2 are
  // black, above level + width / 2 white, linear between.
  Viewer.prototype.draw = function () {
    var img = this.image(this.index);
    if (!img.naturalWidth) return;
    this.canvas.width = img.naturalWidth;
    this.canvas.height = img.naturalHeight;
    this.context.drawImage(img, 0, 0);
    var level = Number(this.level.value), width = Number(this.width.value);
    if (level === 128 && width === 255) return;
    var low = level - width / 2, frame = this.context.getImageData(0, 0, img.naturalWidth, img.naturalHeight);
    var lut = new Uint8ClampedArray(256);
    for (var v = 0; v < 256; v++) lut[v] = Math.round((v - low) / width * 255);
    for (var p = 0; p < frame.data.length; p += 4) {
      frame.data[p] = lut[frame.data[p]]; frame.data[p + 1] = lut[frame.data[p + 1]]; frame.data[p + 2] = lut[frame.data[p + 2]];
    }
    this.context.putImageData(frame, 0, 0);
  };

  Viewer.prototype.drawStrip = function () {
    var svg = this.root.querySelector("[data-strip]"), n = this.slices.length, step = 1000 / n, self = this;
    var parts = [];
    (this.data.runs || []).forEach(function (run) {
      var a = self.indexOf(run[0]), b = self.indexOf(run[1]);
      parts.push('<rect class="strip-run" x="' + (a * step) + '" y="0" width="' + ((b - a + 1) * step) + '" height="60"/>');
    });
    this.slices.forEach(function (slice, i) {
      if (slice.quality && slice.quality.status === "rejected") {
        parts.push('<rect class="strip-refused" x="' + (i * step) + '" y="52" width="' + step + '" height="8"/>');
      } else if (slice.probability !== null) {
        var h = Math.max(1, slice.probability * 56);
        parts.push('<rect class="strip-bar' + (slice.probability >= self.data.threshold ? " above" : "") + '" x="' +
                   (i * step) + '" y="' + (58 - h) + '" width="' + Math.max(step - 0.5, 0.5) + '" height="' + h + '"/>');
      }
    });
    var t = 58 - this.data.threshold * 56;
    parts.push('<line class="strip-threshold" x1="0" x2="1000" y1="' + t + '" y2="' + t + '"/>');
    parts.push('<rect class="strip-current" data-strip-current x="0" y="0" width="' + step + '" height="60"/>');
    svg.innerHTML = parts.join("");
    svg.addEventListener("click", function (event) {
      var box = svg.getBoundingClientRect();
      self.show(Math.floor((event.clientX - box.left) / box.width * n));
    });
  };

  Viewer.prototype.markStrip = function () {
    var current = this.root.querySelector("[data-strip-current]");
    if (current) current.setAttribute("x", this.index * 1000 / this.slices.length);
  };

  function start(scope) {
    var root = scope.querySelector("[data-series-viewer]");
    var data = scope.querySelector("#series-data");
    if (root && data && !root.dataset.ready) {
      root.dataset.ready = "1";
      new Viewer(root, JSON.parse(data.textContent));
    }
  }
  window.BrainScanSeries = { start: start };
  start(document);
})();
