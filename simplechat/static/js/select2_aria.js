/* Shared by the pages with a Select2 field (new conversation, a group's Manage dialog). */
(function () {
  "use strict";
  // Select2's own controls, made valid for assistive technology without touching the library:
  // named after our label; its inline search box is a textarea, which may not take
  // role="searchbox"; while its list is open the combobox controls the list, and an
  // aria-activedescendant of "undefined" (nothing highlighted yet) is dropped.
  function tidySelect2Aria($el, labelId) {
    var box = $el.next(".select2")[0];
    var selection = box.querySelector(".select2-selection");
    var search = box.querySelector("textarea.select2-search__field");
    selection.setAttribute("aria-labelledby", labelId);
    if (search) { search.removeAttribute("role"); }
    function tidy() {
      var active = selection.getAttribute("aria-activedescendant");
      if (active !== null && (active === "undefined" || !document.getElementById(active))) {
        selection.removeAttribute("aria-activedescendant");
      }
      var list = selection.getAttribute("aria-owns");  // set by Select2 while open
      if (selection.getAttribute("aria-expanded") === "true" && list) {
        selection.setAttribute("aria-controls", list);
      } else {
        selection.removeAttribute("aria-controls");
      }
    }
    new MutationObserver(tidy).observe(selection, {
      attributes: true, attributeFilter: ["aria-activedescendant", "aria-expanded", "aria-owns"]
    });
    tidy();
    return search;
  }
  window.tidySelect2Aria = tidySelect2Aria;
}());
