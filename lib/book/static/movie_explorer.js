/* Movie explorer: title lookup and top-k ranking as lib/movies/recommend.py does them.
   API for readers' consoles and the tests: window.bookWidgets.movieExplorer. */
(function () {
  "use strict";
  function decodeBase64(text) {
    var raw = atob(text), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }
  function half(h) {  // IEEE float16 bits -> the same number as a float64 (exact)
    var sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return sign * f * Math.pow(2, -24);
    if (e === 31) return f ? NaN : sign * Infinity;
    return sign * (1 + f / 1024) * Math.pow(2, e - 15);
  }
  /* lib.book.widgets.decode: base64 -> inflate (the browser's DecompressionStream) -> unshuffle the
     byte planes -> little-endian float32/float16 -> Float64Array. */
  function decodeSet(s) {
    var stream = new Blob([decodeBase64(s.data)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buffer) {
      var planes = new Uint8Array(buffer), size = s.dtype === "float32" ? 4 : 2, n = planes.length / size;
      var raw = new Uint8Array(planes.length), out = new Float64Array(n), i, p;
      for (p = 0; p < size; p++) for (i = 0; i < n; i++) raw[i * size + p] = planes[p * n + i];
      var view = new DataView(raw.buffer);
      for (i = 0; i < n; i++) out[i] = size === 4 ? view.getFloat32(i * 4, true) : half(view.getUint16(i * 2, true));
      return out;
    });
  }
  function fold(text) {  // lib.movies.recommend._fold
    text = String(text).normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
    text = text.replace(/[^\p{L}\p{N}_\s']/gu, " ").replace(/'/g, "");
    return text.replace(/\s+/g, " ").trim();
  }
  var YEAR = /\s*\(\d{4}(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$/;
  var LEADING = ["the", "a", "an"];
  function escapeRe(s) { return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  function Explorer(root, data) {
    var self = this;
    this.root = root; this.data = data; this.cache = {};
    this.trailing = new RegExp(",\\s*(" + data.articles.map(escapeRe).join("|") + ")\\s*$", "i");
    // expand the compact catalog: display titles, genre names, lookup keys (TitleIndex)
    data.shown = data.titles.map(function (t, i) { return data.shown[i] || t; });
    data.genres = data.genres.map(function (bits) {
      return data.genreNames.filter(function (g, b) { return bits & (1 << b); }).join(", ");
    });
    this.byKey = new Map(); this.full = new Map(); this.shownFull = new Map();
    this.norms = data.titles.map(function (t) { return self.normalise(t); });
    function add(key, i) {
      if (!key) return;
      var rows = self.byKey.get(key);
      if (!rows) self.byKey.set(key, rows = []);
      if (rows[rows.length - 1] !== i) rows.push(i);
    }
    data.titles.forEach(function (t, i) {
      var keys = [self.norms[i]].concat(data.extraKeys[i] || []).sort();
      keys.forEach(function (key) { add(key, i); });
      var full = fold(t);
      if (!self.full.has(full)) self.full.set(full, i);
      var shown = fold(data.shown[i]);  // every title as the page shows it (and offers it) is found
      self.shownFull.set(shown, self.shownFull.has(shown) ? -1 : i);
    });
    this.input = root.querySelector(".bw-title");
    this.kInput = root.querySelector(".bw-k");
    this.similarity = root.querySelector(".bw-similarity");
    this.set = root.querySelector(".bw-set");
    this.status = root.querySelector(".bw-status");
    this.rows = root.querySelector(".bw-rows");
    data.sets.forEach(function (s, i) { self.set.add(new Option(s.label, String(i))); });
    var list = document.getElementById(root.id + "-titles"), fragment = document.createDocumentFragment();
    data.shown.forEach(function (t) { var o = document.createElement("option"); o.value = t; fragment.appendChild(o); });
    list.appendChild(fragment);
    [this.input, this.kInput, this.similarity, this.set].forEach(function (el) {
      el.addEventListener(el.tagName === "SELECT" ? "change" : "input", function () { self.update(); });
    });
  }
  Explorer.prototype.normalise = function (text) {  // lib.movies.recommend.normalise_title
    text = String(text).trim().replace(YEAR, "").replace(this.trailing, "");
    var folded = fold(text), space = folded.indexOf(" ");
    if (space > 0 && LEADING.indexOf(folded.slice(0, space)) >= 0) return folded.slice(space + 1);
    return folded;
  };
  Explorer.prototype.words = function (key, year) {  // titles holding the key as whole words
    var re = new RegExp("(?<![\\p{L}\\p{N}_])" + escapeRe(key) + "(?![\\p{L}\\p{N}_])", "u"), out = [];
    for (var i = 0; i < this.norms.length; i++)
      if (re.test(this.norms[i]) && (year === null || this.data.years[i] === year)) out.push(i);
    return out;
  };
  /* {index} for the one movie the query names, else {candidates: [rows]}: TitleIndex.resolve, plus
     every title exactly as the page shows it ("The Postman (Il Postino) (1994)"), which the
     library's lookup does not find when a title has an alternative title in parentheses. */
  Explorer.prototype.resolve = function (query) {
    if (!query || !query.trim()) return {candidates: []};
    var folded = fold(query);
    if (this.full.has(folded)) return {index: this.full.get(folded)};
    if (this.shownFull.get(folded) >= 0) return {index: this.shownFull.get(folded)};
    var key = this.normalise(query), m = /\((\d{4})\)\s*$/.exec(query.trim());
    var year = m ? parseInt(m[1], 10) : null, years = this.data.years;
    var matches = (this.byKey.get(key) || []).slice();
    if (!matches.length) matches = (this.byKey.get(fold(query.replace(YEAR, ""))) || []).slice();
    if (year !== null) matches = matches.filter(function (i) { return years[i] === year; });
    if (!matches.length && key) {
      var words = this.words(key, year);
      if (words.length === 1) return {index: words[0]};
      matches = words;
    }
    return matches.length === 1 ? {index: matches[0]} : {candidates: matches};
  };
  Explorer.prototype.vectors = function (setIndex, cosine) {
    var name = setIndex + (cosine ? "c" : "d");
    if (this.cache[name]) return this.cache[name];
    var n = this.data.count, d = this.data.dim, V = Float64Array.from(this.decoded[setIndex]), i, j;
    if (cosine) for (i = 0; i < n; i++) {
      var squares = 0;
      for (j = 0; j < d; j++) squares += V[i * d + j] * V[i * d + j];
      var norm = Math.sqrt(squares);
      for (j = 0; j < d; j++) V[i * d + j] = norm > 0 ? V[i * d + j] / norm : 0;
    }
    return (this.cache[name] = V);
  };
  /* [{index, score}] of the k nearest movies: highest first, ties to the lower row (top_k). */
  Explorer.prototype.topK = function (query, k, similarity, setIndex) {
    var n = this.data.count, d = this.data.dim, V = this.vectors(setIndex, similarity === "cosine");
    var scores = new Float64Array(n), order = [], i, j;
    for (i = 0; i < n; i++) {
      var s = 0;
      for (j = 0; j < d; j++) s += V[i * d + j] * V[query * d + j];
      scores[i] = (i === query || isNaN(s)) ? -Infinity : s;
      order.push(i);
    }
    order.sort(function (a, b) { return scores[a] !== scores[b] ? (scores[a] > scores[b] ? -1 : 1) : a - b; });
    return order.slice(0, Math.min(k, n - 1)).map(function (i) { return {index: i, score: scores[i]}; });
  };
  Explorer.prototype.cell = function (tr, text) {
    var td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
  };
  Explorer.prototype.update = function () {
    if (!this.decoded) return;  // still inflating the vectors
    var data = this.data, found = this.resolve(this.input.value), self = this;
    var k = Math.max(5, Math.min(50, parseInt(this.kInput.value, 10) || data.defaultK));
    var setIndex = parseInt(this.set.value, 10) || 0, similarity = this.similarity.value;
    if (found.index === undefined) {
      var c = found.candidates;
      this.status.textContent = !this.input.value.trim() ? "Type a movie title." : c.length
        ? "\u201c" + this.input.value + "\u201d matches " + c.length + " movies: " +
          c.slice(0, 8).map(function (i) { return data.shown[i]; }).join("; ") + (c.length > 8 ? "; \u2026" : "") +
          ". Add the year."
        : "No movie with a like is called \u201c" + this.input.value + "\u201d.";
      return;
    }
    var rows = this.topK(found.index, k, similarity, setIndex), body = document.createDocumentFragment();
    rows.forEach(function (row, r) {
      var tr = document.createElement("tr"), i = row.index;
      tr.dataset.index = String(i);
      [String(r + 1), data.shown[i], data.years[i] === null ? "" : String(data.years[i]), data.genres[i],
       String(data.likes[i]), row.score.toFixed(3)].forEach(function (t) { self.cell(tr, t); });
      body.appendChild(tr);
    });
    this.rows.replaceChildren(body);
    this.root.dataset.query = String(found.index);
    var moved = "";
    if (setIndex > 0) {  // how far the list moved from the book's embeddings
      var reference = new Set(this.topK(found.index, k, similarity, 0).map(function (row) { return row.index; }));
      var common = rows.filter(function (row) { return reference.has(row.index); }).length;
      moved = " " + common + " of these " + rows.length + " are also in the list from " + data.sets[0].name + ".";
    }
    this.status.textContent = k + " movies most similar to " + data.shown[found.index] + " (" +
      data.likes[found.index] + " likes), by " + (similarity === "cosine" ? "cosine" : "dot product") +
      ", embeddings of " + data.sets[setIndex].name + "." + moved;
  };
  Explorer.prototype.shown = function () {  // the rows on screen: [{index, title, score}]
    return Array.prototype.map.call(this.rows.querySelectorAll("tr"), function (tr) {
      return {index: parseInt(tr.dataset.index, 10), title: tr.children[1].textContent,
              score: parseFloat(tr.children[5].textContent)};
    });
  };

  window.bookWidgets = window.bookWidgets || {};
  document.querySelectorAll('[data-widget="movie_explorer"]').forEach(function (root) {
    if (root.dataset.ready) return;
    var explorer = new Explorer(root, JSON.parse(document.getElementById(root.id + "-data").textContent));
    window.bookWidgets.movieExplorer = explorer;
    Promise.all(explorer.data.sets.map(function (s) { return decodeSet(s); }))
      .then(function (decoded) {
        explorer.decoded = decoded;
        explorer.input.value = explorer.data.defaultTitle;
        explorer.kInput.value = String(explorer.data.defaultK);
        explorer.update();
        explorer.readyAt = performance.now();
        root.dataset.ready = "true";
      }, function (error) { explorer.status.textContent = "The explorer could not load its data: " + error; });
  });
})();
