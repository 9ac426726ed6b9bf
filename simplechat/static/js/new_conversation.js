/* New conversation: Select2 with AJAX user search; the title shows for groups. */
(function () {
  "use strict";
  var $select = $("#participants");
  if (!$select.length) { return; }
  $select.select2({
    theme: "bootstrap-5",
    width: "100%",
    placeholder: "Search people by name, username or e-mail",
    minimumInputLength: 1,
    ajax: {
      url: $select.data("search-url"),
      dataType: "json",
      delay: 200,
      data: function (params) { return { q: params.term || "" }; },
      processResults: function (data) { return { results: data.results || [] }; }
    }
  });
  function toggleTitle() {
    var count = ($select.val() || []).length;
    $("#title-group").toggleClass("d-none", count < 2);
  }
  $select.on("change", toggleTitle);
  toggleTitle();
})();
