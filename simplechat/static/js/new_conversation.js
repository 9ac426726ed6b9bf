/* New conversation: Select2 with AJAX user search; the title shows for groups. */
(function () {
  "use strict";
  var $select = $("#participants");
  if (!$select.length) { return; }
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
  var search = window.tidySelect2Aria($select, "participants-label");
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
