// The item explorer: every test item x every arm, filtered, sorted and searched in the page.
// Data comes from <script type="application/json" id="explorer-data"> (columnar, see report/items.py);
// only the rows of the current page become DOM nodes, so 10,000 items x 8 arms open at once.
// Every text goes in through textContent: model outputs and inputs never become markup.
// The state lives in the URL hash (#items?f=disagree&n=all ...), so a view can be linked and tested.
(function () {
  "use strict";
  var holder = document.getElementById("explorer-data");
  var root = document.getElementById("explorer");
  if (!holder || !root) return;
  var D = JSON.parse(holder.textContent);
  var N = D.ids.length, A = D.arms, PAGE = 50, FOLD = 180;
  var disagree = new Uint8Array(N), flagged = new Uint8Array(N), spread = new Float64Array(N);
  var lo = 0, hi = 1;
  A.forEach(function (a) { a.score.forEach(function (s) { if (s !== null) { lo = Math.min(lo, s); hi = Math.max(hi, s); } }); });
  for (var k = 0; k < N; k++) {
    var seen = {}, answers = 0, mn = Infinity, mx = -Infinity;
    for (var j = 0; j < A.length; j++) {
      var s = A[j].score[k];
      if (A[j].flag[k]) flagged[k] = 1;
      if (s === null) continue;
      var p = A[j].pred[k], key = p === null ? "\u0000none" : p.trim();
      if (!(key in seen)) { seen[key] = 1; answers++; }
      mn = Math.min(mn, s); mx = Math.max(mx, s);
    }
    disagree[k] = answers > 1 ? 1 : 0;
    spread[k] = mx > mn ? mx - mn : 0;
  }
  var haystack = null;  // built on the first search only
  function hay(k) {
    if (haystack === null) {
      haystack = new Array(N);
      for (var i = 0; i < N; i++) {
        var parts = [D.ids[i], D.inputs[i], D.targets[i]];
        A.forEach(function (a) { parts.push(a.pred[i] || "", a.out[i] || ""); });
        haystack[i] = parts.join("\u0001").toLowerCase();
      }
    }
    return haystack[k];
  }

  var state = {f: "all", a: A.length ? A[0].name : "", b: A.length > 1 ? A[1].name : "", q: "", sort: "item", page: 0, n: String(PAGE)};
  function readHash() {
    var h = location.hash;
    if (h.indexOf("#items?") !== 0) return;
    new URLSearchParams(h.slice(7)).forEach(function (v, key) { if (key in state) state[key] = v; });
    state.page = parseInt(state.page, 10) || 0;
  }
  function writeHash() {
    var p = new URLSearchParams();
    Object.keys(state).forEach(function (key) { p.set(key, String(state[key])); });
    try { history.replaceState(null, "", "#items?" + p.toString()); } catch (e) { /* file:// may refuse */ }
  }
  function armIndex(name) { for (var j = 0; j < A.length; j++) if (A[j].name === name) return j; return -1; }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function option(sel, value, label) { var o = el("option", null, label); o.value = value; sel.appendChild(o); return o; }

  // -- controls -------------------------------------------------------------------------------
  var bar = el("div", "explorer-bar");
  var search = el("input"); search.type = "search"; search.placeholder = "search inputs, targets, outputs"; search.id = "explorer-search";
  var filter = el("select"); filter.id = "explorer-filter";
  option(filter, "all", "all items");
  option(filter, "disagree", "arms disagree");
  option(filter, "worse", "arm A worse than arm B");
  option(filter, "flagged", "flagged (format / hallucination)");
  var armA = el("select"), armB = el("select");
  armA.id = "explorer-a"; armB.id = "explorer-b";
  A.forEach(function (a) { option(armA, a.name, a.name); option(armB, a.name, a.name); });
  var sort = el("select"); sort.id = "explorer-sort";
  option(sort, "item", "item order");
  option(sort, "spread", "score spread across arms, largest first");
  option(sort, "diff", "score of B minus A, largest first");
  var pairLabel = el("span", "pair");
  pairLabel.append("A ", armA, " B ", armB);
  bar.append(search, " show ", filter, pairLabel, " sort ", sort);
  var count = el("p", "explorer-count"); count.id = "explorer-count";
  var pager = el("div", "explorer-pager");
  var scroll = el("div", "scroll");
  var table = el("table", "explorer-table"); table.id = "explorer-table";
  var thead = el("thead"), tbody = el("tbody"), hr = el("tr");
  ["item", "input", "target"].forEach(function (h) { hr.appendChild(el("th", null, h)); });
  A.forEach(function (a) { hr.appendChild(el("th", "arm", a.name)); });
  thead.appendChild(hr); table.append(thead, tbody); scroll.appendChild(table);
  root.append(bar, count, pager, scroll);

  // -- filter, sort, page -----------------------------------------------------------------------
  function selected() {
    var q = state.q.trim().toLowerCase(), ia = armIndex(state.a), ib = armIndex(state.b), out = [];
    for (var k = 0; k < N; k++) {
      if (state.f === "disagree" && !disagree[k]) continue;
      if (state.f === "flagged" && !flagged[k]) continue;
      if (state.f === "worse") {
        var sa = ia < 0 ? null : A[ia].score[k], sb = ib < 0 ? null : A[ib].score[k];
        if (sa === null || sb === null || !(sa < sb)) continue;
      }
      if (q && hay(k).indexOf(q) < 0) continue;
      out.push(k);
    }
    if (state.sort === "spread") out.sort(function (x, y) { return spread[y] - spread[x] || x - y; });
    if (state.sort === "diff" && ia >= 0 && ib >= 0) {
      var d = function (k) { var sa = A[ia].score[k], sb = A[ib].score[k]; return sa === null || sb === null ? -Infinity : sb - sa; };
      out.sort(function (x, y) { return d(y) - d(x) || x - y; });
    }
    return out;
  }

  function folded(text) {
    text = text === null || text === undefined ? "" : String(text);
    if (text.length <= FOLD) return el("span", "text", text);
    var det = el("details"), sum = el("summary", null, text.slice(0, FOLD - 40) + "…");
    det.append(sum, el("div", "text", text));
    return det;
  }
  function scoreColour(s) {
    var t = hi > lo ? (s - lo) / (hi - lo) : 0;
    return "hsl(" + Math.round(120 * t) + ", 70%, 92%)";  // red (worst) to green (best) of the metric's range
  }
  function cell(a, k) {
    var td = el("td", "cell"), s = a.score[k];
    if (s === null) { td.className = "cell missing"; td.textContent = "not scored"; return td; }
    if (D.binary) td.className = "cell " + (s === 1 ? "right" : "wrong");
    else td.style.background = scoreColour(s);
    var head = el("div", "answer");
    head.appendChild(el("span", "mark", D.binary ? (s === 1 ? "✓" : "✗") : s.toFixed(3)));
    var answer = a.pred[k] === null ? "(no answer)" : a.pred[k];
    if (answer.length <= 60) head.appendChild(el("b", null, answer));  // a label: bold
    else head.appendChild(folded(answer));  // free text: plain, folded when long
    td.appendChild(head);
    if (a.flag[k] & 1) td.appendChild(el("span", "flag", "format"));
    if (a.flag[k] & 2) td.appendChild(el("span", "flag", "not a label"));
    if (a.out[k] !== null) {  // the raw output, where it is not simply the parsed answer
      var raw = el("div", "raw"); raw.appendChild(el("span", "label", "output: ")); raw.appendChild(folded(a.out[k])); td.appendChild(raw);
    }
    return td;
  }
  function row(k) {
    var tr = el("tr", "item" + (disagree[k] ? " disagree" : ""));
    tr.dataset.id = D.ids[k];
    tr.appendChild(el("td", "id", D.ids[k]));
    var inp = el("td", "input"); inp.appendChild(folded(D.inputs[k])); tr.appendChild(inp);
    tr.appendChild(el("td", "target", D.targets[k]));
    A.forEach(function (a) { tr.appendChild(cell(a, k)); });
    return tr;
  }
  function button(label, page) {
    var b = el("button", null, label);
    b.addEventListener("click", function () { state.page = page; render(); });
    return b;
  }
  function render() {
    var idx = selected(), all = state.n === "all", size = all ? Math.max(idx.length, 1) : (parseInt(state.n, 10) || PAGE);
    var pages = Math.max(1, Math.ceil(idx.length / size));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    var first = state.page * size, rows = idx.slice(first, first + size), frag = document.createDocumentFragment();
    rows.forEach(function (k) { frag.appendChild(row(k)); });
    tbody.replaceChildren(frag);
    count.textContent = idx.length ? ("Items " + (first + 1) + "–" + (first + rows.length) + " of " + idx.length +
      " matching (" + N + " test items in all)") : ("No item matches (" + N + " test items in all)");
    count.dataset.matching = String(idx.length);
    pager.replaceChildren();
    if (pages > 1) {
      pager.append(button("« first", 0), button("‹ previous", state.page - 1),
        el("span", null, " page " + (state.page + 1) + " of " + pages + " "), button("next ›", state.page + 1));
      var showAll = button("show all", 0);
      showAll.addEventListener("click", function () { state.n = "all"; render(); });
      pager.appendChild(showAll);
    }
    pairLabel.style.display = state.f === "worse" || state.sort === "diff" ? "" : "none";
    if (ready) writeHash();  // a plain visit keeps its plain URL
  }
  var ready = false;
  function sync() {
    search.value = state.q; filter.value = state.f; sort.value = state.sort; armA.value = state.a; armB.value = state.b;
  }
  var timer = null;
  search.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = search.value; state.page = 0; render(); }, 120);
  });
  [[filter, "f"], [sort, "sort"], [armA, "a"], [armB, "b"]].forEach(function (pair) {
    pair[0].addEventListener("change", function () { state[pair[1]] = pair[0].value; state.page = 0; render(); });
  });

  // -- who is wrong where the other is right: counts that open the filter ------------------------
  var grid = document.getElementById("explorer-pairs");
  if (grid && A.length > 1) {
    var t = el("table", "pairs"), h = el("tr");
    h.appendChild(el("th", null, "A worse than B →"));
    A.forEach(function (b) { h.appendChild(el("th", "arm", b.name)); });
    t.appendChild(h);
    A.forEach(function (a, ia) {
      var r = el("tr");
      r.appendChild(el("th", "arm", a.name));
      A.forEach(function (b, ib) {
        var n = 0;
        if (ia !== ib) for (var k = 0; k < N; k++) { var sa = a.score[k], sb = b.score[k]; if (sa !== null && sb !== null && sa < sb) n++; }
        var td = el("td", "num");
        if (ia === ib) td.textContent = "—";
        else {
          var link = el("a", null, String(n));
          link.href = "#explorer";
          link.addEventListener("click", function () { state.f = "worse"; state.a = a.name; state.b = b.name; state.page = 0; sync(); render(); });
          td.appendChild(link);
        }
        r.appendChild(td);
      });
      t.appendChild(r);
    });
    grid.appendChild(t);
  }

  readHash();
  sync();
  render();
  ready = true;
  if (location.hash.indexOf("#items?") === 0) root.scrollIntoView();
  window.addEventListener("hashchange", function () { readHash(); sync(); render(); });
})();
