// Trellis traffic wizard: sliders for the version weights. Without this script the number
// fields submit on their own and the server checks that they total 100; with it, moving one
// slider moves the others proportionally so the total stays 100, and the total is shown live.
(function () {
  "use strict";
  var table = document.querySelector(".wizard-weights");
  if (!table) return;
  var numbers = Array.prototype.slice.call(table.querySelectorAll("input.weight-number"));
  var sliders = numbers.map(function (number) {
    return table.querySelector('input.weight-slider[data-for="' + number.id + '"]');
  });
  var total = document.getElementById("weight-total");

  function value(input) {
    var n = parseInt(input.value, 10);
    return isNaN(n) ? 0 : Math.max(0, Math.min(100, n));
  }

  function showTotal() {
    var sum = numbers.reduce(function (acc, input) { return acc + value(input); }, 0);
    if (total) {
      total.textContent = sum + " %";
      total.classList.toggle("weight-total-bad", sum !== 100);
    }
  }

  // Sets weight `index` to `target` and shares the rest among the others in proportion to
  // their current weights (evenly when they are all 0), in whole numbers summing to 100.
  function rebalance(index, target) {
    var others = numbers.map(function (_, i) { return i; }).filter(function (i) { return i !== index; });
    var rest = 100 - target;
    var current = others.map(function (i) { return value(numbers[i]); });
    var sum = current.reduce(function (a, b) { return a + b; }, 0);
    var exact = current.map(function (w) {
      return sum > 0 ? (w * rest) / sum : rest / others.length;
    });
    var whole = exact.map(Math.floor);
    var left = rest - whole.reduce(function (a, b) { return a + b; }, 0);
    var order = exact.map(function (x, j) { return j; })
      .sort(function (a, b) { return (exact[b] - whole[b]) - (exact[a] - whole[a]); });
    for (var k = 0; k < left && k < order.length; k++) whole[order[k]] += 1;
    set(index, target);
    others.forEach(function (i, j) { set(i, whole[j]); });
  }

  function set(i, weight) {
    numbers[i].value = String(weight);
    if (sliders[i]) sliders[i].value = String(weight);
  }

  sliders.forEach(function (slider, i) {
    if (!slider) return;
    slider.hidden = false;
    slider.addEventListener("input", function () {
      if (numbers.length === 1) { set(0, 100); } else { rebalance(i, value(slider)); }
      showTotal();
    });
  });
  numbers.forEach(function (number, i) {
    number.addEventListener("input", function () {
      if (sliders[i]) sliders[i].value = String(value(number));
      showTotal();
    });
  });
  showTotal();
})();
