// Analytics pages: reshuffle the montage from the pool stored with the dataset study, without a reload.
(function () {
  "use strict";
  var button = document.querySelector("[data-reshuffle]");
  var montages = document.querySelectorAll("[data-montage]");
  if (!button || !montages.length) return;

  function sample(pool, count) {
    var copy = pool.slice();
    for (var i = copy.length - 1; i > 0; i--) {
      var j = Math.floor(Math.random() * (i + 1));
      var swap = copy[i]; copy[i] = copy[j]; copy[j] = swap;
    }
    return copy.slice(0, count);
  }

  button.addEventListener("click", function (event) {
    event.preventDefault();
    montages.forEach(function (montage) {
      var pool = JSON.parse(montage.dataset.pool || "[]");
      var items = montage.querySelectorAll("li");
      sample(pool, items.length).forEach(function (image, index) {
        var img = items[index].querySelector("img");
        img.src = image.src;
        img.alt = img.alt.replace(/\([^)]*\)$/, "(" + image.caption + ")");
        items[index].querySelector("span").textContent = image.caption;
      });
    });
  });
})();
