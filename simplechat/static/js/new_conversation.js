/* New conversation: Select2 with AJAX user search; the title shows for groups. */
(function () {
  "use strict";
  var $select = $("#participants");
  if (!$select.length) { return; }
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
  $select.select2({
    theme: "bootstrap-5",
    width: "100%",
    dropdownParent: $select.closest("form"),  // inside the page's main landmark
    placeholder: "Name, username or e-mail",
    minimumInputLength: 1,
    language: { search: function () { return "Search people"; } },
    ajax: {
      url: $select.data("search-url"),
      dataType: "json",
      delay: 200,
      data: function (params) { return { q: params.term || "" }; },
      processResults: function (data) { return { results: data.results || [] }; }
    }
  });
  var search = tidySelect2Aria($select, "participants-label");
  if (search) {  // besides what Select2 describes it with (the people picked)
    var described = search.getAttribute("aria-describedby");
    search.setAttribute("aria-describedby", (described ? described + " " : "") + "participants-help");
  }
  function toggleTitle() {
    var count = ($select.val() || []).length;
    $("#title-group").toggleClass("d-none", count < 2);
  }
  $select.on("change", toggleTitle);
  toggleTitle();
})();
