/* Prediction gallery browser: tiles cut from one embedded PNG sprite sheet.
   API for readers' consoles and the tests: window.bookWidgets.galleryBrowser. */
(function () {
  "use strict";
  function Gallery(root, data) {
    var self = this, raw = atob(data.sprite), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    this.root = root; this.data = data;
    this.spriteUrl = URL.createObjectURL(new Blob([bytes], {type: "image/png"}));
    this.position = new Map(data.testIndex.map(function (t, p) { return [t, p]; }));
    this.model = root.querySelector(".bw-model");
    this.cls = root.querySelector(".bw-class");
    this.count = root.querySelector(".bw-count");
    data.models.forEach(function (m, j) { self.model.add(new Option(m.label, String(j))); });
    data.classes.forEach(function (c, j) { self.cls.add(new Option(c, String(j))); });
    this.model.value = String(data.defaultModel);
    this.cls.value = String(data.defaultClass);
    [this.model, this.cls, this.count].forEach(function (el) {
      el.addEventListener("change", function () { self.update(); });
    });
  }
  Gallery.prototype.tile = function (testIndex, modelIndex) {
    var d = this.data, p = this.position.get(testIndex), scale = 2, size = d.tile * scale;
    var rows = Math.ceil(d.testIndex.length / d.columns);
    var pred = d.classes[d.pred[modelIndex][p]], prob = d.prob[modelIndex][p].toFixed(3);
    var tile = document.createElement("div"), img = document.createElement("div"), text = document.createElement("div");
    tile.className = "bw-tile"; tile.dataset.index = String(testIndex);
    img.className = "bw-img";
    img.setAttribute("role", "img");
    img.setAttribute("aria-label", "test image " + testIndex + ", predicted " + pred + " with probability " + prob);
    img.style.backgroundImage = "url(" + this.spriteUrl + ")";
    img.style.backgroundSize = (d.columns * size) + "px " + (rows * size) + "px";
    img.style.backgroundPosition = (-(p % d.columns) * size) + "px " + (-Math.floor(p / d.columns) * size) + "px";
    text.textContent = pred + " " + prob;
    tile.appendChild(img); tile.appendChild(text);
    return tile;
  };
  Gallery.prototype.update = function () {
    var m = parseInt(this.model.value, 10), c = parseInt(this.cls.value, 10), k = parseInt(this.count.value, 10), self = this;
    [["correct", ".bw-correct"], ["incorrect", ".bw-incorrect"]].forEach(function (side) {
      var box = self.root.querySelector(side[1]), fragment = document.createDocumentFragment();
      self.data[side[0]][m][c].slice(0, k).forEach(function (t) { if (t >= 0) fragment.appendChild(self.tile(t, m)); });
      box.replaceChildren(fragment);
      if (!box.children.length) box.textContent = "none";
    });
  };
  Gallery.prototype.shown = function () {  // {correct: [test index], incorrect: [...]} on screen
    var root = this.root;
    function read(sel) {
      return Array.prototype.map.call(root.querySelectorAll(sel + " .bw-tile"), function (t) {
        return parseInt(t.dataset.index, 10);
      });
    }
    return {correct: read(".bw-correct"), incorrect: read(".bw-incorrect")};
  };
  Gallery.prototype.choose = function (model, cls) {  // by name, as a reader would
    var d = this.data;
    this.model.value = String(d.models.findIndex(function (x) { return x.name === model; }));
    this.model.dispatchEvent(new Event("change"));
    this.cls.value = String(d.classes.indexOf(cls));
    this.cls.dispatchEvent(new Event("change"));
    return this.shown();
  };

  window.bookWidgets = window.bookWidgets || {};
  document.querySelectorAll('[data-widget="gallery_browser"]').forEach(function (root) {
    if (root.dataset.ready) return;
    var gallery = new Gallery(root, JSON.parse(document.getElementById(root.id + "-data").textContent));
    gallery.update();
    gallery.readyAt = performance.now();
    root.dataset.ready = "true";
    window.bookWidgets.galleryBrowser = gallery;
  });
})();
